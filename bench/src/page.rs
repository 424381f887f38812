//! `bench page`: the time from a SIGKILL to the member shown as down on the management page,
//! in a real browser running in real time.
//!
//! One observing node runs in this process with its management endpoint on; headless
//! `chromium` keeps its page (`/`) open, driven over the DevTools protocol
//! (`easy_rpc_tests::browser`), with no virtual time: the page polls on the wall clock. Each
//! trial starts a node process (`bench page-node`), waits until the page shows it serving,
//! lets it live `--alive-secs` (plus a spread over the page's one-second poll cycle), SIGKILLs it and records, on the wall clock: when the
//! observer's registry dropped it (failure detection), and when the page showed it down (the
//! `data-shown-at` the page writes on its `down` change, in the same render that removes its
//! row). Needs `chromium`.
//!
//! ```text
//! cargo run -p easy-rpc-bench -- page [--trials 5] [--alive-secs 3] [--gossip-ms MS]
//! ```

use std::time::{Duration, Instant};

use easy_rpc::Node;
use easy_rpc::cluster_helper::NodeStatus;
use easy_rpc_tests::browser::{Browser, wall_ms};

use crate::procs::Proc;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn builder(cluster: &str, name: &str, gossip_ms: Option<u64>) -> easy_rpc::NodeBuilder {
    let b = Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(crate::secret::secret())
        .default_node(false);
    match gossip_ms {
        Some(ms) => b.gossip_interval(Duration::from_millis(ms)),
        None => b,
    }
}

/// `bench page-node <cluster> <name> <seed> [gossip-ms]`: a node with role `work`, seeded
/// with `seed`; prints `STARTED <node-id>` and runs until killed.
pub fn node(args: &[String]) {
    crate::rpc::rt().block_on(async move {
        let node = builder(&args[0], &args[1], args.get(3).and_then(|v| v.parse().ok()))
            .roles(["work"])
            .seeds([args[2].as_str()])
            .start()
            .await
            .expect("start");
        println!("STARTED {}", node.id());
        let _ = node.run_until_shutdown().await;
    });
}

/// One trial, in ms from the SIGKILL.
struct Trial {
    /// The observer's registry dropped the member.
    detected: i64,
    /// The page showed it down (the page's own clock, `data-shown-at`).
    shown: i64,
    /// This program read it from the DOM (an upper bound of `shown`).
    read: i64,
}

/// p50 and max.
fn p50_max(mut v: Vec<i64>) -> (i64, i64) {
    v.sort_unstable();
    (v[(v.len() - 1) / 2], v[v.len() - 1])
}

pub fn run(args: &[String]) {
    let trials: usize = arg(args, "--trials").unwrap_or(5).max(1);
    let alive = Duration::from_secs_f64(arg(args, "--alive-secs").unwrap_or(3.0));
    let gossip_ms: Option<u64> = arg(args, "--gossip-ms");
    if easy_rpc_tests::browser::chromium().is_none() {
        eprintln!("bench page needs chromium");
        std::process::exit(2);
    }
    let machine = crate::procs::machine();
    let rt = crate::runtime();
    let cluster = format!("bench-page-{}", std::process::id());
    let observer = rt.block_on(async {
        builder(&cluster, "page-observer", gossip_ms)
            .roles(["observer"])
            .http_listen("127.0.0.1:0".parse().expect("addr"))
            .start()
            .await
            .expect("start the observer")
    });
    rt.block_on(observer.ready());
    let http = observer.http_addr().expect("endpoint on");
    let seed = observer.gossip_addr().to_string();

    // When the observer's registry dropped each node (wall clock, ms).
    let (dropped, fill) = easy_rpc_tests::browser::down_times(observer.registry().events());
    rt.spawn(fill);

    let profile = std::env::temp_dir().join(format!("bench-page-chromium-{}", std::process::id()));
    let mut browser = Browser::launch(profile).expect("start chromium");
    let page = browser
        .open(&format!("http://{http}/"))
        .expect("open the page");
    let within = Duration::from_secs(30);
    browser
        .wait_for(
            &page,
            "document.querySelector('tr[data-member=\"page-observer\"]') !== null",
            within,
        )
        .expect("the page shows the observer");

    let mut results = Vec::new();
    for i in 0..trials {
        let name = format!("page-k{i}");
        let mut node_args = vec!["page-node", &cluster, &name, &seed];
        let gossip = gossip_ms.map(|ms| ms.to_string());
        if let Some(ms) = &gossip {
            node_args.push(ms);
        }
        let (proc, first) = Proc::spawn(&name, &[], &node_args);
        let id = first
            .strip_prefix("STARTED ")
            .unwrap_or_else(|| panic!("{name}: {first}"))
            .to_owned();
        let start = Instant::now();
        while !observer
            .members()
            .iter()
            .any(|m| m.id.to_string() == id && m.status == NodeStatus::Serving)
        {
            assert!(start.elapsed() < within, "the observer never saw {id}");
            std::thread::sleep(Duration::from_millis(10));
        }
        browser
            .wait_for(
                &page,
                &format!("document.querySelector('tr[data-member=\"{name}\"][data-status=\"serving\"]') !== null"),
                within,
            )
            .unwrap_or_else(|| panic!("the page never showed {name} serving"));
        // Spread the signals over the page's one-second poll cycle.
        std::thread::sleep(alive + Duration::from_millis((i as u64 * 373) % 1000));

        let killed = wall_ms();
        drop(proc); // SIGKILL, then reaped
        let shown_at = browser
            .wait_for(
                &page,
                &format!(
                    "(() => {{ const li = document.querySelector('li[data-change=\"down\"][data-id=\"{id}\"]'); \
                     return li && !document.querySelector('tr[data-member=\"{name}\"]') ? Number(li.dataset.shownAt) : null; }})()"
                ),
                within,
            )
            .and_then(|v| v.as_u64())
            .unwrap_or_else(|| panic!("the page never showed {name} down"));
        let read = wall_ms();
        let start = Instant::now();
        let dropped_at = loop {
            if let Some(&t) = dropped.lock().unwrap().get(&id) {
                break t;
            }
            assert!(start.elapsed() < within, "the registry never dropped {id}");
            std::thread::sleep(Duration::from_millis(5));
        };
        let ms = |t: u64| t as i64 - killed as i64;
        let t = Trial {
            detected: ms(dropped_at),
            shown: ms(shown_at),
            read: ms(read),
        };
        eprintln!(
            "trial {i}: dropped by the registry {} ms, shown down {} ms (read from the DOM at {} ms), page lag {} ms",
            t.detected,
            t.shown,
            t.read,
            t.shown - t.detected
        );
        results.push(t);
    }
    let shot = std::env::temp_dir().join("bench-page.png");
    if browser.screenshot(&page, &shot).is_ok() {
        eprintln!("screenshot: {}", shot.display());
    }
    browser.close();
    rt.block_on(observer.shutdown());

    let (d50, dmax) = p50_max(results.iter().map(|t| t.detected).collect());
    let (s50, smax) = p50_max(results.iter().map(|t| t.shown).collect());
    let (l50, lmax) = p50_max(results.iter().map(|t| t.shown - t.detected).collect());
    let (r50, rmax) = p50_max(results.iter().map(|t| t.read - t.detected).collect());
    println!("# page: SIGKILL to shown down in the browser\n");
    println!(
        "One observing node with its management endpoint, headless chromium on its page in real \
         time (no virtual time), {trials} node processes SIGKILLed in turn after {alive:?} alive (plus 0-1 s); \
         gossip every {}; times on the wall clock from the SIGKILL; {machine}\n",
        gossip_ms.map_or("250 ms (the default)".to_owned(), |ms| format!("{ms} ms"))
    );
    println!("| figure | p50 | max | trials | goal |\n| --- | --- | --- | --- | --- |");
    println!(
        "| SIGKILL -> dropped by the observer's registry (failure detection) | {d50} ms | {dmax} ms | {trials} | reported |"
    );
    println!(
        "| SIGKILL -> shown down in the browser | {s50} ms | {smax} ms | {trials} | <= failure detection + 1 s |"
    );
    println!("| page lag (shown down - dropped) | {l50} ms | {lmax} ms | {trials} | <= 1000 ms |");
    println!(
        "| page lag as read from the DOM by this program | {r50} ms | {rmax} ms | {trials} | reported |"
    );
}
