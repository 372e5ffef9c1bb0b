# Stage 6: the tidy table of the study and its scaling figures.


rule aggregate:
    input:
        encoding=encoding_outputs("json"),
        # reference points (workflow/rules/reference.smk) stand beside the grid points
        summaries=expand(f"{RESULTS}/pretrain/{{grid}}/summary.json", grid=GRID_NAMES)
        + REFERENCE_SUMMARIES,
        logs=expand(f"{RESULTS}/pretrain/{{grid}}/log.tsv", grid=GRID_NAMES),
    output:
        table=report(
            ENCODING_TABLE,
            caption="../report/encoding_table.rst",
            category="Tables",
        ),
        parcels=PARCEL_TABLE,
        figures=[
            report(f, caption="../report/scaling_figures.rst", category="Figures")
            for f in SCALING_FIGURES
        ],
        copies=siblings([ENCODING_TABLE, PARCEL_TABLE], ".parquet")
        + siblings(SCALING_FIGURES, ".svg"),
    log:
        f"{LOGS}/aggregate.log",
    conda:
        "../envs/cortexscale.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(),
        runtime=runtime(0.5),
    shell:
        "cortexscale aggregate --encoding {input.encoding} --summaries {input.summaries}"
        " --out {output.table} --figures {output.figures} 2> {log}"
