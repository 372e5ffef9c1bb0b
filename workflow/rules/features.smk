# Stage 4: features of every stimulus, one vector per TR and kept layer.


rule features:
    input:
        vqvae=VQVAE,
        model=f"{RESULTS}/pretrain/{{grid}}/model.pt",
        frames=CORPUS,
        # order only: the dataset's check passes before any extraction
        fmri=FMRI_MARKER,
    output:
        f"{RESULTS}/features/{{grid}}.h5",
    log:
        f"{LOGS}/features/{{grid}}.log",
    conda:
        "../envs/cortexscale.yaml"
    threads: THREADS
    resources:
        mem_mb=mem_mb(2),
        runtime=runtime(),
        gpu=GPUS,
    params:
        cfg=sections("features"),
        fmri_root=FMRI_ROOT_ARG,
        device=DEVICE,
    shell:
        "cortexscale features --sections {params.cfg} --grid {wildcards.grid}"
        " --vqvae {input.vqvae} --model {input.model} --fmri-root {params.fmri_root}"
        " --frames {input.frames} --out {output} --threads {threads}"
        " --device {params.device} 2> {log}"
