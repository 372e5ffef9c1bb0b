# Stage 7: the study's answer: scaling fits, the compute frontier, factor tests, a summary.


rule analyse:
    input:
        table=ENCODING_TABLE,
        parcels=PARCEL_TABLE,
    output:
        fits=report(
            f"{RESULTS}/tables/scaling_fits.tsv",
            caption="../report/scaling_fits.rst",
            category="Tables",
        ),
        frontier=f"{RESULTS}/tables/frontier.tsv",
        allocation=f"{RESULTS}/tables/allocation.tsv",
        comparisons=report(
            f"{RESULTS}/tables/comparisons.tsv",
            caption="../report/comparisons.rst",
            category="Tables",
        ),
        summary=report(
            SUMMARY,
            caption="../report/summary.rst",
            category="Summary",
        ),
        figure=report(
            FRONTIER_FIGURE,
            caption="../report/frontier.rst",
            category="Figures",
        ),
        fits_figure=report(
            f"{RESULTS}/figures/scaling_fits.png",
            caption="../report/scaling_fits_figure.rst",
            category="Figures",
        ),
        curves=f"{RESULTS}/tables/fit_curves.tsv",
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
    shell:
        "cortexscale analyse --sections {params.cfg} --table {input.table}"
        " --parcels {input.parcels} --out-dir {params.out_dir} --summary {output.summary}"
        " --frontier-figure {output.figure} 2> {log}"


if ATLAS:

    rule brain_maps:
        input:
            parcels=PARCEL_TABLE,
            atlas=ATLAS,
        output:
            report(BRAIN_MAP, caption="../report/brain_map.rst", category="Figures"),
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
            " --out {output} 2> {log}"
