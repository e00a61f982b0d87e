//! A tower-test double of the few Kubernetes API paths the driver uses, for unit tests (as
//! kube-rs tests its own client). It records every request, keeps the Pods and Secrets it was
//! given, answers lists and streams watch events for the statuses a test sets. It is never a
//! lane: the k3s lane and `--kubeconfig` runs talk to a real cluster.
//!
//! Paths: `GET /version`; `POST`, `GET`, `PATCH`, `DELETE` of
//! `/api/v1/namespaces/<ns>/{pods,secrets}[/<name>]`; the list and `watch=true` forms of pods;
//! `GET …/pods/<name>/log`. Anything else is answered 404, so a test sees an unexpected request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc as stream_channel;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{json, Value};
use tokio::sync::watch;

/// The response body type of the double.
pub type MockBody = UnsyncBoxBody<Bytes, Infallible>;

/// One request the double received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `GET`, `POST`…
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The JSON body (`Null` when none).
    pub body: Value,
}

impl Recorded {
    /// `"POST /api/v1/namespaces/ns/pods"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    pods: BTreeMap<String, Value>,
    secrets: BTreeMap<String, Value>,
    logs: BTreeMap<String, String>,
    watchers: Vec<stream_channel::UnboundedSender<Bytes>>,
    refusals: Vec<(String, String, u16, String)>,
    stuck: bool,
    version: u64,
}

/// The double; clones share it.
#[derive(Clone)]
pub struct MockApi {
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
    client: kube::Client,
}

impl MockApi {
    /// A client whose requests the returned double answers (a task of the current runtime).
    pub fn start() -> (kube::Client, MockApi) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
        let api = MockApi {
            state: Arc::default(),
            changed: watch::channel(0).0,
            client: kube::Client::new(service, "default"),
        };
        let server = api.clone();
        tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            while let Some((request, respond)) = handle.next_request().await {
                let response = server.answer(request).await;
                respond.send_response(response);
            }
        });
        (api.client(), api)
    }

    /// Another client of the same double (a restarted gateway's).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The requests so far that change something (`POST`, `PATCH`, `DELETE`), as lines.
    pub fn writes(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.method != "GET")
            .map(Recorded::line)
            .collect()
    }

    /// Waits (at most `limit`) until `done` holds for the requests and stored objects.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&MockApi) -> bool) -> bool {
        let mut changed = self.changed.subscribe();
        let waited = tokio::time::timeout(limit, async {
            loop {
                if done(self) {
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        });
        waited.await.is_ok() && done(self)
    }

    /// Waits until the driver's watcher has a watch open (statuses set before are only seen by
    /// its next list).
    pub async fn watching(&self) -> bool {
        self.wait_until(Duration::from_secs(5), |api| {
            !api.lock().watchers.is_empty()
        })
        .await
    }

    /// A stored Pod.
    pub fn pod(&self, name: &str) -> Option<Value> {
        self.lock().pods.get(name).cloned()
    }

    /// A stored Secret.
    pub fn secret(&self, name: &str) -> Option<Value> {
        self.lock().secrets.get(name).cloned()
    }

    /// The names of the stored Pods and Secrets.
    pub fn objects(&self) -> Vec<String> {
        let state = self.lock();
        let pods = state.pods.keys().map(|n| format!("pod/{n}"));
        let secrets = state.secrets.keys().map(|n| format!("secret/{n}"));
        pods.chain(secrets).collect()
    }

    /// Sets a Pod's `status` and streams the change to open watches.
    pub fn set_pod_status(&self, name: &str, status: Value) {
        let pod = {
            let mut state = self.lock();
            state.version += 1;
            let version = state.version.to_string();
            let Some(pod) = state.pods.get_mut(name) else {
                return;
            };
            pod["status"] = status;
            pod["metadata"]["resourceVersion"] = json!(version);
            pod.clone()
        };
        self.broadcast("MODIFIED", &pod);
    }

    /// Removes a Pod as if someone else deleted it, and streams the deletion.
    pub fn remove_pod(&self, name: &str) {
        let removed = self.lock().pods.remove(name);
        if let Some(pod) = removed {
            self.broadcast("DELETED", &pod);
        }
    }

    /// The output a Pod's log endpoint returns.
    pub fn set_logs(&self, pod: &str, text: &str) {
        self.lock().logs.insert(pod.to_string(), text.to_string());
    }

    /// Answers requests `METHOD` whose path contains `path` with an API error.
    pub fn refuse(&self, method: &str, path: &str, code: u16, message: &str) {
        self.lock().refusals.push((
            method.to_string(),
            path.to_string(),
            code,
            message.to_string(),
        ));
    }

    /// From now on a graceful Pod delete only marks the Pod terminating (it never goes); a
    /// delete with `gracePeriodSeconds: 0` removes it.
    pub fn pods_never_terminate(&self) {
        self.lock().stuck = true;
    }

    fn broadcast(&self, kind: &str, object: &Value) {
        let line = format!("{}\n", json!({"type": kind, "object": object}));
        self.lock()
            .watchers
            .retain(|w| w.unbounded_send(Bytes::from(line.clone())).is_ok());
        self.bump();
    }

    async fn answer(&self, request: Request<Body>) -> Response<MockBody> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let recorded = Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        self.lock().requests.push(recorded.clone());
        let response = self.route(&parts.method, &recorded);
        self.bump();
        response
    }

    fn route(&self, method: &Method, r: &Recorded) -> Response<MockBody> {
        let refusal = self
            .lock()
            .refusals
            .iter()
            .find(|(m, p, _, _)| m == method.as_str() && r.path.contains(p.as_str()))
            .cloned();
        if let Some((_, _, code, message)) = refusal {
            return status(code, &message);
        }
        if r.path == "/version" {
            return ok(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-mock"}));
        }
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["api", "v1", "namespaces", _, kind] => self.collection(method, kind, r),
            ["api", "v1", "namespaces", _, kind, name] => self.object(method, kind, name, r),
            ["api", "v1", "namespaces", _, "pods", name, "log"] => {
                match self.lock().logs.get(*name) {
                    Some(text) => respond(StatusCode::OK, Bytes::from(text.clone())),
                    None => status(400, "container \"sandbox\" is waiting to start"),
                }
            }
            _ => status(404, &format!("the double has no {}", r.path)),
        }
    }

    fn collection(&self, method: &Method, kind: &str, r: &Recorded) -> Response<MockBody> {
        match (method.as_str(), kind) {
            ("POST", "pods" | "secrets") => {
                let mut object = r.body.clone();
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut state = self.lock();
                let store = if kind == "pods" {
                    &mut state.pods
                } else {
                    &mut state.secrets
                };
                if store.contains_key(&name) {
                    return status(409, &format!("{kind} \"{name}\" already exists"));
                }
                object["metadata"]["uid"] = json!(format!("uid-{name}"));
                state.version += 1;
                object["metadata"]["resourceVersion"] = json!(state.version.to_string());
                let store = if kind == "pods" {
                    &mut state.pods
                } else {
                    &mut state.secrets
                };
                store.insert(name, object.clone());
                drop(state);
                if kind == "pods" {
                    self.broadcast("ADDED", &object);
                }
                respond_json(StatusCode::CREATED, &object)
            }
            ("GET", "pods") if r.query.contains("watch=true") => {
                let (tx, rx) = stream_channel::unbounded::<Bytes>();
                self.lock().watchers.push(tx);
                let frames = rx.map(|b| Ok::<_, Infallible>(http_body::Frame::data(b)));
                let body = StreamBody::new(frames).boxed_unsync();
                Response::builder()
                    .status(StatusCode::OK)
                    .body(body)
                    .expect("a valid response")
            }
            ("GET", "pods") => {
                let state = self.lock();
                let items: Vec<Value> = state.pods.values().cloned().collect();
                let version = state.version.to_string();
                ok(json!({
                    "apiVersion": "v1", "kind": "PodList",
                    "metadata": {"resourceVersion": version}, "items": items,
                }))
            }
            _ => status(405, &format!("the double does not {method} {kind}")),
        }
    }

    fn object(&self, method: &Method, kind: &str, name: &str, r: &Recorded) -> Response<MockBody> {
        let mut state = self.lock();
        let stuck = state.stuck;
        let store = match kind {
            "pods" => &mut state.pods,
            "secrets" => &mut state.secrets,
            _ => return status(404, &format!("the double has no {kind}")),
        };
        let not_found = || status(404, &format!("{kind} \"{name}\" not found"));
        match method.as_str() {
            "GET" => match store.get(name) {
                Some(object) => ok(object.clone()),
                None => not_found(),
            },
            "PATCH" => match store.get_mut(name) {
                Some(object) => {
                    if let Some(owners) = r.body["metadata"].get("ownerReferences") {
                        object["metadata"]["ownerReferences"] = owners.clone();
                    }
                    ok(object.clone())
                }
                None => not_found(),
            },
            "DELETE" => {
                let grace = r.body["gracePeriodSeconds"].as_i64().unwrap_or(30);
                if kind == "pods" && stuck && grace > 0 {
                    let Some(object) = store.get_mut(name) else {
                        return not_found();
                    };
                    object["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
                    object["metadata"]["resourceVersion"] = json!(format!(
                        "{}-terminating",
                        object["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or("0")
                    ));
                    let object = object.clone();
                    drop(state);
                    self.broadcast("MODIFIED", &object);
                    return ok(object);
                }
                let Some(object) = store.remove(name) else {
                    return not_found();
                };
                drop(state);
                if kind == "pods" {
                    self.broadcast("DELETED", &object);
                }
                ok(object)
            }
            _ => status(405, &format!("the double does not {method} {kind}/{name}")),
        }
    }
}

fn respond(code: StatusCode, bytes: Bytes) -> Response<MockBody> {
    Response::builder()
        .status(code)
        .body(Full::new(bytes).boxed_unsync())
        .expect("a valid response")
}

fn respond_json(code: StatusCode, value: &Value) -> Response<MockBody> {
    respond(code, Bytes::from(value.to_string()))
}

fn ok(value: Value) -> Response<MockBody> {
    respond_json(StatusCode::OK, &value)
}

fn status(code: u16, message: &str) -> Response<MockBody> {
    let reason = match code {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "AlreadyExists",
        422 => "Invalid",
        _ => "InternalError",
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    respond_json(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}
