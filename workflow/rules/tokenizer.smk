# Stage 2: the VQ-VAE, trained once, and the corpus tokenised once into tokens.h5.


rule tokenizer:
    input:
        frames=CORPUS,
    output:
        checkpoint=VQVAE,
        tokens=TOKENS,
        summary=f"{RESULTS}/tokenizer/summary.json",
    log:
        f"{LOGS}/tokenizer.log",
    # the head of the critical path (tokenizer -> pretrain -> features -> encode): before the
    # reference and pretrained-model arms, which only fill the cores around it
    priority: 20
    conda:
        "../envs/cortexscale.yaml"
    # resources.threads like every job: a job asking for more cores than one waits until that
    # many are free at once, which the one-core jobs of the reference and pretrained-model
    # arms never leave (with 2 threads it started after all 34 reference jobs)
    threads: THREADS
    resources:
        mem_mb=mem_mb(2),
        runtime=runtime(),
        gpu=GPUS,
    params:
        cfg=sections("tokenizer", "seed"),
        device=DEVICE,
    shell:
        "cortexscale tokenizer --sections {params.cfg} --frames {input.frames}"
        " --checkpoint {output.checkpoint} --tokens {output.tokens}"
        " --summary {output.summary} --threads {threads} --device {params.device}"
        " 2> {log}"
