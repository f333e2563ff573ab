//! The Kubernetes CronJob of docs/operations.md.

use super::run_arguments;

/// The Kubernetes CronJob of the runbook: one tick per slot, never two at
/// once, JSON logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesJob {
    /// The CronJob's name.
    pub name: String,
    /// The container image.
    pub image: String,
    /// A five-field cron schedule.
    pub every: String,
    /// The folder the config map is mounted at (holding `config.toml`).
    pub config_dir: String,
    /// The config map holding `config.toml`.
    pub config_map: String,
    /// The claim holding the agent store and `plans/`, mounted at `/data`.
    pub claim: String,
}

/// The Kubernetes CronJob manifest.
pub fn kubernetes_cronjob(job: &KubernetesJob) -> String {
    let config = format!("{}/config.toml", job.config_dir);
    let args: Vec<String> = run_arguments(config, true, true)
        .iter()
        .map(|arg| serde_json::to_string(arg).expect("a string serializes"))
        .collect();
    let quoted = |text: &str| serde_json::to_string(text).expect("a string serializes");
    format!(
        "# One maintenance tick (`run --once`) per slot, never two at once; the config from a config map.\n\
         apiVersion: batch/v1\n\
         kind: CronJob\n\
         metadata:\n\
         \x20 name: {name}\n\
         spec:\n\
         \x20 schedule: {every}\n\
         \x20 concurrencyPolicy: Forbid\n\
         \x20 jobTemplate:\n\
         \x20   spec:\n\
         \x20     backoffLimit: 0\n\
         \x20     template:\n\
         \x20       spec:\n\
         \x20         restartPolicy: Never\n\
         \x20         containers:\n\
         \x20           - name: {name}\n\
         \x20             image: {image}\n\
         \x20             args: [{args}]\n\
         \x20             volumeMounts:\n\
         \x20               - {{ name: config, mountPath: {config_dir}, readOnly: true }}\n\
         \x20               - {{ name: agents, mountPath: /data }}   # the agent store and plans/\n\
         \x20         volumes:\n\
         \x20           - {{ name: config, configMap: {{ name: {config_map} }} }}\n\
         \x20           - {{ name: agents, persistentVolumeClaim: {{ claimName: {claim} }} }}\n",
        name = job.name,
        every = quoted(&job.every),
        image = job.image,
        args = args.join(", "),
        config_dir = job.config_dir,
        config_map = job.config_map,
        claim = job.claim,
    )
}
