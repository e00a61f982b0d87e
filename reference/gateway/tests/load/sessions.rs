//! Sessions, reports and watchers at once: the contention a gateway sees when many sandboxes
//! run and many fail together (a bad policy rolled out to a fleet).
//!
//! The run, in order, and why:
//! 1. Create `sessions` + `reports` sandboxes; open a watch on each before anything happens to
//!    it, so every stream must equal the sandbox's whole stored history.
//! 2. Open one supervisor session per session sandbox, each on its own connection, as a sandbox
//!    does; each answers with its own heartbeats at the interval the gateway gave it.
//! 3. Connect one client per reporting sandbox (connection setup is not the ack latency).
//! 4. Release every `ReportSupervisorError` at the moment the first session receives its first
//!    gateway heartbeat: the sessions opened together, so their heartbeats come as one wave and
//!    the reports contend with it. All at once (a fleet failing together: the ack latency is
//!    then mostly the queue), or spread evenly over a window (a steady rate: the service time).
//! 5. Wait until every session has exchanged heartbeats both ways (none may drop meanwhile).
//! 6. Close every session; its sandbox is demoted, which ends its watcher.
//! 7. Check every stream against the stored history, and every history against the contract:
//!    created → Ready → demoted for a session, created → Error for a report, nothing else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openshell_proto::reasons;
use openshell_proto::v1::{
    gateway_message, sandbox_stream_event, supervisor_message, ReportSupervisorErrorRequest,
    Sandbox, SandboxPhase, SupervisorHeartbeat, SupervisorHello, SupervisorMessage,
    SupervisorStartupStage, WatchSandboxRequest,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::checker::{check_whole_history, StreamFault};
use crate::common::{phase, ready, with_token, Gateway};
use crate::figures::{self, ms, Latencies};
use crate::setup::{connect, create_all, Created, SETUP_CONCURRENCY};

/// The size of a run.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub sessions: usize,
    pub reports: usize,
    /// Watch streams multiplexed on one connection (watchers are observers, not supervisors;
    /// kept under HTTP/2's usual 100–200 concurrent-stream cap).
    pub watchers_per_connection: usize,
    pub heartbeat_secs: u32,
    /// The reports are released evenly over this window; zero releases them all at once.
    pub report_spread: Duration,
}

/// What a run measured and found.
#[derive(Debug)]
pub struct Figures {
    pub size: Size,
    pub report_ack: Latencies,
    pub reports_failed: Vec<String>,
    /// From releasing the reports until the last ack, and the CPU time (both sides, all
    /// threads) used meanwhile: near twice the wall time on 2 cores means the burst is CPU-bound.
    pub burst: Duration,
    pub burst_cpu: Duration,
    pub sessions_open: Duration,
    /// Fewest heartbeats one session received from / sent to the gateway.
    pub min_beats: (u32, u32),
    pub streams_checked: usize,
    /// Streams that reached their sandbox's last state before the settle time.
    pub streams_settled: usize,
    pub transitions_checked: usize,
    pub faults: Vec<(String, StreamFault)>,
    /// Histories that are not the contract's shape (e.g. a session dropped under load).
    pub unexpected_histories: Vec<String>,
    pub rss_baseline_kib: u64,
    pub rss_peak_kib: u64,
    pub peak_is_own: bool,
    pub wall: Duration,
}

impl Figures {
    pub fn json(&self) -> Value {
        json!({
            "sessions": self.size.sessions,
            "reports": self.size.reports,
            "watchers": self.size.sessions + self.size.reports,
            "heartbeat_secs": self.size.heartbeat_secs,
            "report_spread_ms": ms(self.size.report_spread),
            "report_ack": self.report_ack.json(),
            "reports_failed": self.reports_failed.len(),
            "report_burst_ms": ms(self.burst),
            "report_burst_cpu_ms": ms(self.burst_cpu),
            "sessions_open_ms": ms(self.sessions_open),
            "min_heartbeats_received": self.min_beats.0,
            "min_heartbeats_sent": self.min_beats.1,
            "streams_checked": self.streams_checked,
            "streams_settled": self.streams_settled,
            "transitions_checked": self.transitions_checked,
            "lost_or_reordered": self.faults.len(),
            "unexpected_histories": self.unexpected_histories.len(),
            "rss_baseline_mib": self.rss_baseline_kib / 1024,
            "rss_peak_mib": self.rss_peak_kib / 1024,
            "rss_peak_since_process_start": !self.peak_is_own,
            "wall_ms": ms(self.wall),
        })
    }
}

/// Runs the scenario against a fresh gateway on the file database `db`.
pub async fn run(db: &str, size: Size) -> Figures {
    let total = size.sessions + size.reports;
    let watch_connections = total.div_ceil(size.watchers_per_connection);
    // Two descriptors per connection (both ends are in this process), plus the store and slack.
    figures::ensure_fd_limit(2 * (size.sessions + size.reports + watch_connections) as u64 + 512);
    let started = Instant::now();
    let gw = Gateway::start(db, size.heartbeat_secs).await;
    let peak_is_own = figures::reset_peak_rss();
    let rss_baseline_kib = figures::rss_kib();
    let phase_deadline = Duration::from_secs(60 + 3 * u64::from(size.heartbeat_secs));

    // 1. Sandboxes and their watchers.
    let session_names: Vec<String> = (0..size.sessions).map(|i| format!("s-{i}")).collect();
    let report_names: Vec<String> = (0..size.reports).map(|i| format!("r-{i}")).collect();
    let all: Vec<String> = session_names.iter().chain(&report_names).cloned().collect();
    let created = create_all(&gw, &all).await;
    let mut watch_clients = Vec::new();
    for _ in 0..watch_connections {
        watch_clients.push(connect(&gw.endpoint).await);
    }
    let mut watchers: HashMap<String, JoinHandle<Vec<Sandbox>>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::channel::<()>(total.max(1));
    let (stop_tx, stop) = watch::channel(false);
    for (i, name) in all.iter().enumerate() {
        let mut client = watch_clients[i / size.watchers_per_connection].clone();
        let request = WatchSandboxRequest {
            id: created[name].id.clone(),
            follow_status: true,
            ..Default::default()
        };
        // The call returns once the gateway has subscribed, so nothing after it can be missed.
        let stream = client.watch_sandbox(request).await.unwrap().into_inner();
        let ends = if name.starts_with("s-") {
            demoted_after_ready
        } else {
            failed
        };
        let follower = follow(stream, ends, done_tx.clone(), stop.clone());
        watchers.insert(name.clone(), tokio::spawn(follower));
    }

    // 2. Sessions, one connection each, opened a bounded number at a time.
    let admission = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let (opened_tx, mut opened_rx) = mpsc::channel::<()>(size.sessions.max(1));
    let (exchanged_tx, mut exchanged_rx) = mpsc::channel::<()>(size.sessions.max(1));
    let (first_beat_tx, mut first_beat) = watch::channel(false);
    let first_beat_tx = Arc::new(first_beat_tx);
    let (close_tx, close) = watch::channel(false);
    let sessions_started = Instant::now();
    let sessions: Vec<JoinHandle<(u32, u32)>> = session_names
        .iter()
        .map(|name| {
            tokio::spawn(supervise(
                gw.endpoint.clone(),
                created[name].clone(),
                admission.clone(),
                Signals {
                    opened: opened_tx.clone(),
                    exchanged: exchanged_tx.clone(),
                    first_beat: first_beat_tx.clone(),
                    close: close.clone(),
                },
            ))
        })
        .collect();
    wait_for(
        &mut opened_rx,
        size.sessions,
        phase_deadline,
        "sessions opened",
    )
    .await;
    let sessions_open = sessions_started.elapsed();

    // 3. Reporting supervisors, connected before the burst.
    let (connected_tx, mut connected_rx) = mpsc::channel::<()>(size.reports.max(1));
    let (go_tx, go) = watch::channel(None);
    let step = size.report_spread / size.reports.max(1) as u32;
    let reports: Vec<JoinHandle<Result<Duration, String>>> = report_names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            tokio::spawn(report(
                gw.endpoint.clone(),
                created[name].clone(),
                admission.clone(),
                connected_tx.clone(),
                (go.clone(), step * i as u32),
            ))
        })
        .collect();
    wait_for(
        &mut connected_rx,
        size.reports,
        phase_deadline,
        "reporters connected",
    )
    .await;

    // 4. The burst, on the first heartbeat wave.
    tokio::time::timeout(phase_deadline, first_beat.wait_for(|b| *b))
        .await
        .expect("a session received a gateway heartbeat")
        .unwrap();
    let (burst_started, cpu_before) = (Instant::now(), figures::cpu_time());
    go_tx.send_replace(Some(tokio::time::Instant::now()));
    let mut acks = Vec::new();
    let mut reports_failed = Vec::new();
    for handle in reports {
        match tokio::time::timeout(phase_deadline, handle).await {
            Ok(Ok(Ok(latency))) => acks.push(latency),
            Ok(Ok(Err(e))) => reports_failed.push(e),
            Ok(Err(e)) => reports_failed.push(format!("report task: {e}")),
            Err(_) => reports_failed.push("no ack within the deadline".into()),
        }
    }
    let (burst, burst_cpu) = (burst_started.elapsed(), figures::cpu_time() - cpu_before);

    // 5. Every session exchanged heartbeats both ways.
    wait_for(
        &mut exchanged_rx,
        size.sessions,
        phase_deadline,
        "heartbeats exchanged",
    )
    .await;
    let rss_peak_kib = figures::peak_rss_kib();

    // 6. Close the sessions; their watchers end at the demotion.
    close_tx.send_replace(true);
    let mut min_beats = (u32::MAX, u32::MAX);
    for handle in sessions {
        let (received, sent) = handle.await.expect("session task");
        min_beats = (min_beats.0.min(received), min_beats.1.min(sent));
    }

    // Every watcher has reached its sandbox's last state, or is stopped after the settle time
    // (the checker then names what its stream is missing).
    let settled = count(&mut done_rx, total, SETTLE).await;
    stop_tx.send_replace(true);

    // 7. Streams against histories.
    let mut faults = Vec::new();
    let mut unexpected_histories = Vec::new();
    let mut transitions_checked = 0;
    let streams_checked = watchers.len();
    for (name, handle) in watchers {
        let seen = handle.await.expect("watch task");
        let history = gw.core.history(&created[&name].id).unwrap();
        transitions_checked += history.len();
        if let Err(fault) = check_whole_history(&seen, &history) {
            faults.push((name.clone(), fault));
        }
        let shape: Vec<SandboxPhase> = history.iter().map(phase).collect();
        let expected: &[SandboxPhase] = if name.starts_with("s-") {
            &[
                SandboxPhase::Provisioning,
                SandboxPhase::Ready,
                SandboxPhase::Provisioning,
            ]
        } else {
            &[SandboxPhase::Provisioning, SandboxPhase::Error]
        };
        if shape != expected {
            unexpected_histories.push(format!("{name}: {shape:?}"));
        }
    }
    drop(watch_clients);
    gw.stop().await;
    Figures {
        size,
        report_ack: Latencies::of(acks).unwrap_or(Latencies {
            count: 0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
        }),
        reports_failed,
        burst,
        burst_cpu,
        sessions_open,
        min_beats: if size.sessions == 0 {
            (0, 0)
        } else {
            min_beats
        },
        streams_checked,
        streams_settled: settled,
        transitions_checked,
        faults,
        unexpected_histories,
        rss_baseline_kib,
        rss_peak_kib,
        peak_is_own,
        wall: started.elapsed(),
    }
}

/// How long watchers may take to see the last change after the sessions closed.
const SETTLE: Duration = Duration::from_secs(30);

/// Counts up to `n` signals on `rx` within `deadline`; returns how many came.
async fn count(rx: &mut mpsc::Receiver<()>, n: usize, deadline: Duration) -> usize {
    let mut got = 0;
    let _ = tokio::time::timeout(deadline, async {
        while got < n && rx.recv().await.is_some() {
            got += 1;
        }
    })
    .await;
    got
}

async fn wait_for(rx: &mut mpsc::Receiver<()>, n: usize, deadline: Duration, what: &str) {
    let got = count(rx, n, deadline).await;
    assert_eq!(got, n, "{what}: {got} of {n} within {deadline:?}");
}

fn demoted_after_ready(seen: &[Sandbox]) -> bool {
    let was_ready = seen.iter().any(|sb| phase(sb) == SandboxPhase::Ready);
    let last = &seen[seen.len() - 1];
    was_ready
        && phase(last) == SandboxPhase::Provisioning
        && ready(last).1 == reasons::SUPERVISOR_DISCONNECTED
}

fn failed(seen: &[Sandbox]) -> bool {
    phase(&seen[seen.len() - 1]) == SandboxPhase::Error
}

/// Collects a watch stream's snapshots until `ends` holds (then says so on `done`), the stream
/// ends, or the run stops it.
async fn follow(
    mut stream: tonic::Streaming<openshell_proto::v1::SandboxStreamEvent>,
    ends: fn(&[Sandbox]) -> bool,
    done: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Sandbox> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::select! {
            event = stream.message() => event,
            _ = raised(&mut stop) => return seen,
        };
        let Ok(Some(event)) = event else {
            return seen;
        };
        if let Some(sandbox_stream_event::Payload::Sandbox(sb)) = event.payload {
            seen.push(sb);
            if ends(&seen) {
                let _ = done.send(()).await;
                return seen;
            }
        }
    }
}

struct Signals {
    opened: mpsc::Sender<()>,
    exchanged: mpsc::Sender<()>,
    first_beat: Arc<watch::Sender<bool>>,
    close: watch::Receiver<bool>,
}

/// A simulated supervisor holding its session: hello, then its own heartbeat every interval
/// (as `openshell-supervisor` does), counting the gateway's. Returns (received, sent).
async fn supervise(
    endpoint: String,
    sandbox: Created,
    admission: Arc<Semaphore>,
    mut signals: Signals,
) -> (u32, u32) {
    let permit = admission.acquire_owned().await.unwrap();
    let mut client = connect(&endpoint).await;
    let (outbound, rx) = mpsc::channel(8);
    let hello = SupervisorHello {
        sandbox_id: sandbox.id.clone(),
        instance_id: "load".into(),
        degraded: vec![],
    };
    outbound
        .send(SupervisorMessage {
            payload: Some(supervisor_message::Payload::Hello(hello)),
        })
        .await
        .unwrap();
    let mut inbound = client
        .connect_supervisor(with_token(ReceiverStream::new(rx), &sandbox.token))
        .await
        .unwrap_or_else(|s| panic!("session of {}: {s}", sandbox.id))
        .into_inner();
    let interval = match inbound.message().await {
        Ok(Some(m)) => match m.payload {
            Some(gateway_message::Payload::SessionAccepted(a)) => {
                Duration::from_secs(a.heartbeat_interval_secs.into())
            }
            other => panic!("session of {} not accepted: {other:?}", sandbox.id),
        },
        other => panic!("session of {} got no answer: {other:?}", sandbox.id),
    };
    drop(permit);
    signals.opened.send(()).await.unwrap();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let (mut received, mut sent, mut told) = (0u32, 0u32, false);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let beat = SupervisorMessage {
                    payload: Some(supervisor_message::Payload::Heartbeat(SupervisorHeartbeat {})),
                };
                outbound.send(beat).await.expect("session stream open while held");
                sent += 1;
            }
            message = inbound.message() => match message {
                Ok(Some(m)) if matches!(m.payload, Some(gateway_message::Payload::Heartbeat(_))) => {
                    received += 1;
                    signals.first_beat.send_replace(true);
                }
                Ok(Some(_)) => {}
                other => panic!("session of {} ended while held: {other:?}", sandbox.id),
            },
            _ = raised(&mut signals.close) => break,
        }
        if !told && received > 0 && sent > 0 {
            told = true;
            signals.exchanged.send(()).await.unwrap();
        }
    }
    (received, sent)
}

/// Resolves once `flag` is raised (holding no borrow of it across awaits, so tasks stay Send).
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|c| *c).await;
}

/// A simulated supervisor whose startup failed: connects, waits for the release (`go` carries
/// its instant) plus its `offset`, reports, and returns how long the ack took.
async fn report(
    endpoint: String,
    sandbox: Created,
    admission: Arc<Semaphore>,
    connected: mpsc::Sender<()>,
    (mut go, offset): (watch::Receiver<Option<tokio::time::Instant>>, Duration),
) -> Result<Duration, String> {
    let permit = admission.acquire_owned().await.unwrap();
    let mut client = connect(&endpoint).await;
    drop(permit);
    connected.send(()).await.unwrap();
    let released = go
        .wait_for(Option::is_some)
        .await
        .unwrap()
        .expect("released");
    // Pacing of the load generator, not synchronisation: a steady rate sends each report at
    // its own slot after the release.
    tokio::time::sleep_until(released + offset).await;
    let request = ReportSupervisorErrorRequest {
        sandbox_id: sandbox.id.clone(),
        stage: SupervisorStartupStage::Policy as i32,
        message: "policy.yaml: unknown field `network_polices` (load test)".into(),
        ..Default::default()
    };
    let sent = Instant::now();
    client
        .report_supervisor_error(with_token(request, &sandbox.token))
        .await
        .map_err(|s| format!("{}: {s}", sandbox.id))?;
    Ok(sent.elapsed())
}
