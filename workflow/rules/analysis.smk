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
    [f"--isoflop-figure {ISOFLOP_FIGURE}"] * HAS_BUDGETS
    + [
        f"--{flag} {shlex.quote(path)}"
        for flag, path in zip(
            ("pretrained", "pretrained-sample-size", "pretrained-fits"), ANALYSIS_PRETRAINED
        )
    ]
    + ["--reference-summaries"] * bool(REFERENCE_SUMMARIES)
    + [shlex.quote(p) for p in REFERENCE_SUMMARIES]
)


rule analyse:
    input:
        table=ENCODING_TABLE,
        parcels=PARCEL_TABLE,
        pretrained=ANALYSIS_PRETRAINED,
        references=REFERENCE_SUMMARIES,
    output:
        fits=report(
            f"{RESULTS}/tables/scaling_fits.tsv",
            caption="../report/scaling_fits.rst",
            category="Tables",
        ),
        frontier=f"{RESULTS}/tables/frontier.tsv",
        allocation=report(
            f"{RESULTS}/tables/allocation.tsv",
            caption="../report/allocation.rst",
            category="Tables",
        ),
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
        isoflop=f"{RESULTS}/tables/isoflop.tsv",
        allocation_figure=report(
            ALLOCATION_FIGURE,
            caption="../report/allocation_figure.rst",
            category="Figures",
        ),
        isoflop_figure=[
            report(f, caption="../report/isoflop_figure.rst", category="Figures")
            for f in [ISOFLOP_FIGURE] * HAS_BUDGETS
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
            brain_map=report(BRAIN_MAP, caption="../report/brain_map.rst", category="Figures"),
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
