# Stage 3: one GPT per grid point, trained from the cached tokens.
# On SIGTERM/SIGUSR2 (Slurm's time-limit warning, see docs/cluster.md) a run checkpoints
# and exits 75; the retry (profile `retries`) runs the same command and resumes.


rule pretrain:
    input:
        tokens=TOKENS,
        frames=CORPUS,
    output:
        model=f"{RESULTS}/pretrain/{{grid}}/model.pt",
        log_tsv=f"{RESULTS}/pretrain/{{grid}}/log.tsv",
        summary=f"{RESULTS}/pretrain/{{grid}}/summary.json",
    log:
        f"{LOGS}/pretrain/{{grid}}.log",
    # the longest jobs of the study: started before the reference and pretrained-model arms
    priority: 10
    conda:
        "../envs/cortexscale.yaml"
    threads: lambda wildcards: THREADS * max(1, gpus_for(wildcards.grid))
    resources:
        mem_mb=mem_mb(2),
        runtime=runtime(),
        # GPUs by model size (resources.gpus_per_model); several run torchrun in the job
        gpu=lambda wildcards: gpus_for(wildcards.grid),
        cpus_per_gpu=THREADS,
    params:
        cfg=sections("pretrain", "corpus", "seed"),
        out_dir=parent("model"),
        device=DEVICE,
        launcher=pretrain_launcher,
        single_epoch="--single-epoch" if config["grid"].get("single_epoch") else "",
        # threads of each training process (the job's threads are per GPU x GPUs)
        proc_threads=lambda wildcards, threads, resources: max(1, threads // max(1, resources.gpu)),
    shell:
        # exec: the training process replaces the job's shell, so a SIGTERM sent to every
        # process of the Slurm job cannot kill the shell (and fail the job) first
        "exec {params.launcher} pretrain --sections {params.cfg} --grid {wildcards.grid}"
        " --tokens {input.tokens} --frames {input.frames} --out-dir {params.out_dir}"
        " --threads {params.proc_threads} --device {params.device} {params.single_epoch}"
        " 2> {log}"
