# Stage 7: the study's answer: scaling fits, the compute frontier, the allocation of
# compute, factor tests, a summary.


rule analyse:
    input:
        table=ENCODING_TABLE,
        parcels=PARCEL_TABLE,
        # the summary covers the pretrained arm when the study has one (its three tables)
        pretrained=PLAN.analysis_pretrained,
        references=REFERENCE_SUMMARIES,
    output:
        fits=data_in_report(PLAN.table("scaling_fits")),
        frontier=data_in_report(PLAN.table("frontier")),
        allocation=data_in_report(PLAN.table("allocation")),
        comparisons=data_in_report(PLAN.table("comparisons")),
        summary=SUMMARY,
        figure=in_report(FRONTIER_FIGURE),
        fits_figure=in_report(PLAN.figure("scaling_fits.png")),
        curves=PLAN.table("fit_curves"),
        isoflop=data_in_report(PLAN.table("isoflop")),
        allocation_figure=in_report(PLAN.figure("allocation.png")),
        # IsoFLOP profiles exist when the grid has budgets or a planted reference is run
        isoflop_figure=[in_report(f) for f in PLAN.isoflop_figures],
        # the summary's and the tables' pages (cortexscale.report.html), shown in the report
        pages=[in_report(p) for p in PLAN.analysis_pages],
        copies=siblings(PLAN.analysis_tables, ".parquet") + siblings(PLAN.analysis_figures, ".svg"),
    log:
        f"{LOGS}/analyse.log",
    conda:
        "../envs/cortexscale.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(),
        runtime=runtime(0.5),
    params:
        cfg=sections("study", "seed", "scaling"),
        out_dir=parent("fits"),
        # --isoflop-figure, the pretrained tables and the reference summaries (when any)
        options=analyse_options,
    shell:
        "cortexscale analyse --sections {params.cfg} --table {input.table}"
        " --parcels {input.parcels} --out-dir {params.out_dir} --summary {output.summary}"
        " --frontier-figure {output.figure} --allocation-figure {output.allocation_figure}"
        " {params.options} 2> {log}"


if ATLAS:

    rule brain_maps:
        input:
            parcels=PARCEL_TABLE,
            atlas=ATLAS,
        output:
            brain_map=in_report(BRAIN_MAP),
            copies=siblings([BRAIN_MAP], ".svg"),
        log:
            f"{LOGS}/brain_maps.log",
        conda:
            "../envs/cortexscale.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(),
            runtime=runtime(0.5),
        shell:
            "cortexscale brain-maps --parcels {input.parcels} --atlas {input.atlas}"
            " --out {output.brain_map} 2> {log}"
