# Stage 3: one GPT per grid point, trained from the cached tokens.


rule pretrain:
    input:
        tokens=TOKENS,
        frames=CORPUS,
    output:
        model=f"{RESULTS}/pretrain/{{grid}}/model.pt",
        log_tsv=f"{RESULTS}/pretrain/{{grid}}/log.tsv",
        summary=f"{RESULTS}/pretrain/{{grid}}/summary.json",
    params:
        cfg=sections("pretrain", "corpus", "seed"),
        out_dir=parent("model"),
        device=DEVICE,
    conda:
        "../envs/cortexscale.yaml"
    log:
        f"{LOGS}/pretrain/{{grid}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb(2),
        runtime=runtime(),
        gpu=GPUS,
    shell:
        "cortexscale pretrain --sections {params.cfg} --grid {wildcards.grid}"
        " --tokens {input.tokens} --frames {input.frames} --out-dir {params.out_dir}"
        " --threads {threads} --device {params.device} 2> {log}"
