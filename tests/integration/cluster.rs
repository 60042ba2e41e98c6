//! The Snakemake workflow through a real executor plugin: with
//! `snakemake-executor-plugin-cluster-generic` and `workflow/profiles/cluster-test`, every
//! job is a batch job of its own (its own session, process group, directory, TMPDIR and
//! log), several run at once on one shared cache, and the tables equal `netdissect run`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{netdissect, repo};
use crate::workflow::{bin_dir, compare, pipeline};

/// Where the test profile's `submit` puts job directories. Every process of the workflow
/// inherits it, which is how [`Reaper`] tells them from every other process.
const JOBS_VAR: &str = "ND_CLUSTER_JOBS";

/// Kills, when dropped, every process whose environment names this test's job directory:
/// Snakemake, its batch jobs (which are in sessions of their own, out of reach of a signal
/// to Snakemake) and whatever they started, so that even a failing test leaves nothing
/// running.
struct Reaper {
    marker: Vec<u8>,
}

impl Reaper {
    fn new(jobs: &Path) -> Reaper {
        Reaper {
            marker: format!("{JOBS_VAR}={}", jobs.display()).into_bytes(),
        }
    }

    /// The live processes (not zombies: their environment reads empty) started for this
    /// test's workflow.
    fn survivors(&self) -> Vec<u32> {
        let own = std::process::id();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != own)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == self.marker))
            })
            .collect()
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // A process may start another between a scan and the kill; a few rounds catch it.
        for _ in 0..50 {
            let pids = self.survivors();
            if pids.is_empty() {
                return;
            }
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            let _ = Command::new("bash")
                .arg("-c")
                .arg(format!("kill -KILL {} 2>/dev/null", list.join(" ")))
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A batch job as its directory under the jobs directory tells it.
#[derive(Debug)]
struct Job {
    dir: PathBuf,
    /// The rule, from the `# properties =` line Snakemake wrote into the job script.
    rule: String,
    /// Snakemake's id of the job.
    jobid: u64,
    /// The job's leader: its pid, process group and session, as it saw them.
    ids: [u32; 3],
    exitcode: String,
    log: String,
}

fn jobs(root: &Path) -> Vec<Job> {
    let mut jobs: Vec<Job> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| {
            let dir = entry.unwrap().path();
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name))
                    .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
            };
            let script = read("job.sh");
            let properties = script
                .lines()
                .find_map(|l| l.strip_prefix("# properties = "))
                .unwrap_or_else(|| panic!("no properties in {}:\n{script}", dir.display()));
            let properties: serde_json::Value = serde_json::from_str(properties).unwrap();
            let ids: Vec<u32> = read("ids")
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            Job {
                rule: properties["rule"].as_str().unwrap().to_owned(),
                jobid: properties["jobid"].as_u64().unwrap(),
                ids: ids.try_into().unwrap(),
                exitcode: read("exitcode").trim().to_owned(),
                log: read("log"),
                dir,
            }
        })
        .collect();
    jobs.sort_by_key(|j| j.jobid);
    jobs
}

/// The rounds of Snakemake's scheduler in its log: for each time it chose jobs to run, the
/// rules of the jobs it submitted to the executor then (local jobs are not submitted).
fn rounds(log: &str) -> Vec<Vec<String>> {
    let mut rounds: Vec<Vec<String>> = Vec::new();
    let mut rule = None;
    for line in log.lines() {
        if line.starts_with("Execute ") && line.ends_with(" jobs...") {
            rounds.push(Vec::new());
        } else if let Some(name) = line.strip_prefix("rule ").and_then(|r| r.strip_suffix(':')) {
            rule = Some(name.to_owned());
        } else if line.starts_with("Submitted job ") {
            let round = rounds.last_mut().expect("a job submitted before any round");
            round.push(rule.take().expect("a job submitted without its rule"));
        }
    }
    rounds
}

/// The group of this process (that of the test and of the Snakemake it starts).
fn own_process_group() -> u32 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[2].parse().unwrap()
}

#[test]
fn every_job_a_batch_job_through_a_cluster_executor_gives_the_tables_of_netdissect_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let models = ["trained"];
    let single = d.join("run.toml");
    std::fs::write(
        &single,
        pipeline(
            &models,
            &d.join("cache-run"),
            Some(&d.join("results-run")),
            false,
        ),
    )
    .unwrap();
    let run = netdissect(&single, &[]);
    assert!(run.ok, "{}", run.stderr);

    let sharded = d.join("workflow.toml");
    std::fs::write(
        &sharded,
        pipeline(&models, &d.join("cache"), Some(&d.join("results")), true),
    )
    .unwrap();
    let (work, root) = (d.join("work"), d.join("jobs"));
    let reaper = Reaper::new(&root);
    let log_path = d.join("snakemake.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut snakemake = Command::new(repo().join(".venv/bin/snakemake"))
        .arg("--snakefile")
        .arg(repo().join("workflow/Snakefile"))
        .arg("--directory")
        .arg(&work)
        .arg("--profile")
        .arg(repo().join("workflow/profiles/cluster-test"))
        .args(["--jobs", "4"])
        .arg("--config")
        .arg(format!("pipeline={}", sharded.display()))
        .arg(format!("bin={}", bin_dir().display()))
        .args(["image_shards=3", "unit_blocks=2", "threads=2"])
        .env(JOBS_VAR, &root)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("SNAKEMAKE_PROFILE")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    // Not a timing assertion: only a bound on a hang (a job whose status never ends), far
    // above the minute or two the workflow takes.
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    let status = loop {
        if let Some(status) = snakemake.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = snakemake.kill();
            let _ = snakemake.wait();
            panic!(
                "the workflow did not end:\n{}",
                std::fs::read_to_string(&log_path).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "the workflow failed:\n{log}");

    // Every job but the local rule `report` ran as a batch job of its own, each once.
    let jobs = jobs(&root);
    let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
    for job in &jobs {
        *rules.entry(job.rule.as_str()).or_default() += 1;
    }
    let expected: BTreeMap<&str, usize> = [
        ("dataset", 1),
        ("extract", 3),
        ("quantile_block", 2),
        ("quantile_merge", 1),
        ("segment", 3),
        ("score", 3),
        ("score_merge", 1),
        ("pages", 1),
        ("index", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(rules, expected, "{jobs:#?}");
    let ids: BTreeSet<u64> = jobs.iter().map(|j| j.jobid).collect();
    assert_eq!(ids.len(), jobs.len(), "{jobs:#?}");
    assert_eq!(log.matches("Submitted job ").count(), jobs.len(), "{log}");
    // Each in a session and process group of its own, none Snakemake's.
    let own = own_process_group();
    let groups: BTreeSet<u32> = jobs.iter().map(|j| j.ids[1]).collect();
    assert_eq!(groups.len(), jobs.len(), "{jobs:#?}");
    for job in &jobs {
        let [pid, group, session] = job.ids;
        assert!(pid == group && group == session, "{job:#?}");
        assert!(group != own && group != snakemake.id(), "{job:#?}");
        assert_eq!(job.exitcode, "0", "{job:#?}");
        assert!(job.dir.join("tmp").is_dir(), "{job:#?}");
        // The job's own Snakemake ran its rule, with the job's TMPDIR, and finished it.
        assert!(
            job.log.contains(&format!("rule {}:\n", job.rule)),
            "{job:#?}"
        );
        let tmpdir = format!("tmpdir={}", job.dir.join("tmp").display());
        let resources = job
            .log
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("resources: "))
            .unwrap_or_default();
        assert!(resources.split(", ").any(|r| r == tmpdir), "{job:#?}");
        assert!(job.log.contains("Finished jobid: "), "{job:#?}");
    }
    // Several at once: the scheduler handed the three extract shards, and later the three
    // segment shards, to the executor together, each as a batch job.
    let rounds = rounds(&log);
    for rule in ["extract", "segment"] {
        assert!(
            rounds.contains(&vec![rule.to_owned(); 3]),
            "{rounds:?}\n{log}"
        );
    }
    // Every process the workflow started has ended: each job's whole process group was gone
    // before its status said it had finished.
    assert_eq!(reaper.survivors(), Vec::<u32>::new());

    // The artifacts are whole, with nothing left in the cache's temporary directories.
    let leftovers: Vec<_> = std::fs::read_dir(d.join("cache/tmp"))
        .unwrap()
        .flat_map(|host| std::fs::read_dir(host.unwrap().path()).unwrap())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The same data in every table: report, scores, counts and thresholds.
    let compared = compare(
        d,
        ("cache", "results"),
        ("cache-run", "results-run"),
        &models,
    );
    assert_eq!(compared.matches(", same").count(), 8, "{compared}");
    assert!(d.join("results/trained/html/index.html").is_file());
    assert!(d.join("results/index.html").is_file());
}
