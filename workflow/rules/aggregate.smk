# Stage 6: the tidy table of the study and its scaling figures.


rule aggregate:
    input:
        encoding=encoding_outputs("json"),
        # reference points (workflow/rules/reference.smk) stand beside the grid points
        summaries=expand(f"{RESULTS}/pretrain/{{grid}}/summary.json", grid=GRID_NAMES)
        + REFERENCE_SUMMARIES,
        logs=expand(f"{RESULTS}/pretrain/{{grid}}/log.tsv", grid=GRID_NAMES),
    output:
        table=data_in_report(ENCODING_TABLE),
        parcels=PARCEL_TABLE,
        figures=[in_report(f) for f in SCALING_FIGURES],
        # the table's page (cortexscale.report.html), shown in the report
        page=in_report(page_of(ENCODING_TABLE)),
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
        " --logs {input.logs} --out {output.table} --figures {output.figures} 2> {log}"
