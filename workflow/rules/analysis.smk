# Stage 7: the study's answer: scaling fits, the compute frontier, the allocation of
# compute, factor tests, a summary.

# the summary covers the pretrained arm when the study has one (its three tables)
ANALYSIS_PRETRAINED = PRETRAINED_TABLES[:3] if PRE_MODELS else []
# IsoFLOP profiles exist when the grid has budgets or a planted reference is run
HAS_BUDGETS = config["grid"].get("mode") == "isoflop" or any(
    r.kind == "planted" for r in REFERENCES
)
ISOFLOP_FIGURE = f"{RESULTS}/figures/isoflop.png"
ALLOCATION_FIGURE = f"{RESULTS}/figures/allocation.png"
ANALYSE_EXTRA = " ".join(
    [f"--isoflop-figure {shell_words(ISOFLOP_FIGURE)}"] * HAS_BUDGETS
    + [
        f"--{flag} {shell_words(path)}"
        for flag, path in zip(
            ("pretrained", "pretrained-sample-size", "pretrained-fits"), ANALYSIS_PRETRAINED
        )
    ]
    + [f"--reference-summaries {shell_words(*REFERENCE_SUMMARIES)}"] * bool(REFERENCE_SUMMARIES)
)


rule analyse:
    input:
        table=ENCODING_TABLE,
        parcels=PARCEL_TABLE,
        pretrained=ANALYSIS_PRETRAINED,
        references=REFERENCE_SUMMARIES,
    output:
        fits=data_in_report(f"{RESULTS}/tables/scaling_fits.tsv"),
        frontier=data_in_report(f"{RESULTS}/tables/frontier.tsv"),
        allocation=data_in_report(f"{RESULTS}/tables/allocation.tsv"),
        comparisons=data_in_report(f"{RESULTS}/tables/comparisons.tsv"),
        summary=SUMMARY,
        figure=in_report(FRONTIER_FIGURE),
        fits_figure=in_report(f"{RESULTS}/figures/scaling_fits.png"),
        curves=f"{RESULTS}/tables/fit_curves.tsv",
        isoflop=data_in_report(f"{RESULTS}/tables/isoflop.tsv"),
        allocation_figure=in_report(ALLOCATION_FIGURE),
        isoflop_figure=[in_report(f) for f in [ISOFLOP_FIGURE] * HAS_BUDGETS],
        # the summary's and the tables' pages (cortexscale.report.html), shown in the report
        pages=[in_report(page_of(SUMMARY))]
        + [
            in_report(f"{RESULTS}/tables/{name}.html")
            for name in ("scaling_fits", "frontier", "isoflop", "allocation", "comparisons")
        ],
        copies=siblings(
            [
                f"{RESULTS}/tables/{name}.tsv"
                for name in (
                    "scaling_fits",
                    "fit_curves",
                    "frontier",
                    "isoflop",
                    "allocation",
                    "comparisons",
                )
            ],
            ".parquet",
        )
        + siblings(
            [FRONTIER_FIGURE, f"{RESULTS}/figures/scaling_fits.png", ALLOCATION_FIGURE]
            + [ISOFLOP_FIGURE] * HAS_BUDGETS,
            ".svg",
        ),
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
        " --frontier-figure {output.figure} --allocation-figure {output.allocation_figure}"
        f" {ANALYSE_EXTRA} 2> {{log}}"


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
