# Stage 6: the tidy table of the study and its scaling figures.


rule aggregate:
    input:
        encoding=encoding_outputs("json"),
        summaries=expand(f"{RESULTS}/pretrain/{{grid}}/summary.json", grid=GRID_NAMES),
    output:
        table=report(
            ENCODING_TABLE,
            caption="../report/encoding_table.rst",
            category="Tables",
        ),
        figures=[
            report(f, caption="../report/scaling_figures.rst", category="Figures")
            for f in SCALING_FIGURES
        ],
    params:
        cfg=sections("grid", "subjects", "rois"),
        figure_dir=f"{RESULTS}/figures",
    log:
        f"{LOGS}/aggregate.log",
    threads: 1
    resources:
        mem_mb=mem_mb(),
        runtime=runtime(0.5),
    shell:
        "cortexscale aggregate --sections {params.cfg} --results {RESULTS}"
        " --out {output.table} --figure-dir {params.figure_dir} 2> {log}"
