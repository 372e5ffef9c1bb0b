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
    # resources.threads per GPU (policy.Plan.pretrain_threads)
    threads: lambda wildcards: PLAN.pretrain_threads(wildcards.grid)
    resources:
        mem_mb=mem_mb(2),
        runtime=runtime(),
        # GPUs by model size (resources.gpus_per_model); several run torchrun in the job
        gpu=lambda wildcards: PLAN.gpus_for(wildcards.grid),
        cpus_per_gpu=THREADS,
    params:
        cfg=sections("pretrain", "corpus", "seed"),
        out_dir=parent("model"),
        device=DEVICE,
        # cortexscale for one process, torchrun with one process per GPU for several
        launcher=lambda wildcards, resources: launcher(resources.gpu),
        single_epoch=PLAN.single_epoch_flag,
        # threads of each training process (the job's threads are per GPU x GPUs)
        proc_threads=lambda wildcards, threads, resources: threads_per_process(
            threads, resources.gpu
        ),
    shell:
        # exec: the training process replaces the job's shell, so a SIGTERM sent to every
        # process of the Slurm job cannot kill the shell (and fail the job) first
        "exec {params.launcher} pretrain --sections {params.cfg} --grid {wildcards.grid}"
        " --tokens {input.tokens} --frames {input.frames} --out-dir {params.out_dir}"
        " --threads {params.proc_threads} --device {params.device} {params.single_epoch}"
        " 2> {log}"
