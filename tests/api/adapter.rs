//! The conformance adapter (`examples/client_tester.rs`) driven through the suite's line
//! protocol, with the broker on an IPv6 origin as the official suite has it: all its cases in
//! one run, ending with the check that discovery and keys were each fetched once.

use std::process::Stdio;
use std::sync::atomic::Ordering::SeqCst;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::broker::{BROKER_KEY, FORGER_KEY, Signature, TestBroker, rs256_header, sign};

struct Adapter {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Adapter {
    fn start(broker_origin: &str) -> Adapter {
        // Integration tests run from target/<profile>/deps; examples are built beside it.
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("examples").join("client_tester")))
            .expect("test binary location");
        assert!(
            exe.exists(),
            "{} is missing: cargo test builds it, or run cargo build --example client_tester",
            exe.display()
        );
        let mut child = Command::new(exe)
            .arg(broker_origin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start client_tester");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Adapter {
            child,
            stdin,
            stdout,
        }
    }

    async fn call(&mut self, parts: &[&str]) -> (String, String) {
        let line = parts.join("\t") + "\n";
        self.stdin.write_all(line.as_bytes()).await.expect("write");
        self.stdin.flush().await.expect("flush");
        let answer =
            tokio::time::timeout(std::time::Duration::from_secs(30), self.stdout.next_line())
                .await
                .expect("the adapter answers within 30 s")
                .expect("read")
                .expect("the adapter is still running");
        let (status, value) = answer.split_once('\t').unwrap_or((answer.as_str(), ""));
        (status.to_owned(), value.to_owned())
    }

    /// `auth`, checked as the suite checks it; returns (client_id, nonce).
    async fn auth(&mut self, broker: &TestBroker, email: &str, state: &str) -> (String, String) {
        // Like the suite: the state is sent only when there is one.
        let (status, url) = if state.is_empty() {
            self.call(&["auth", email]).await
        } else {
            self.call(&["auth", email, state]).await
        };
        assert_eq!(status, "ok", "{url}");
        assert!(
            url.starts_with(&format!("{}?", broker.authorization_endpoint)),
            "{url}"
        );
        let url = url::Url::parse(&url).expect("auth URL");
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        assert_eq!(param("login_hint"), email);
        assert_eq!(param("scope"), "openid email");
        assert_eq!(param("response_type"), "id_token");
        assert_eq!(param("state"), state);
        let redirect = url::Url::parse(&param("redirect_uri")).expect("redirect_uri is a URL");
        let client_id = redirect.origin().ascii_serialization();
        assert_eq!(
            param("client_id"),
            client_id,
            "client_id is the origin of redirect_uri"
        );
        assert!(!param("nonce").is_empty());
        (client_id, param("nonce"))
    }

    async fn verify(&mut self, token: &str) -> (String, String) {
        self.call(&["verify", token]).await
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn payload(broker: &TestBroker, aud: &str, nonce: &str, email: &str) -> Value {
    json!({"iss": broker.origin, "aud": aud, "exp": now() + 5, "iat": now(), "email": email, "nonce": nonce})
}

#[actix_web::test]
async fn the_adapter_passes_every_conformance_case_in_one_run() {
    let broker = TestBroker::start("::1");
    let mut adapter = Adapter::start(&broker.origin);
    let john = "john@example.com";

    assert_eq!(
        adapter.call(&["echo", "hello"]).await,
        ("ok".into(), "hello".into())
    );

    // basic auth
    let (aud, nonce) = adapter.auth(&broker, john, "a1b2c3d4").await;
    let (status, email) = adapter
        .verify(&broker.token(&payload(&broker, &aud, &nonce, john)))
        .await;
    assert_eq!(
        (status.as_str(), email.as_str()),
        ("ok", john),
        "basic auth"
    );

    // Each remaining case: an edit of the claims, and whether the token must be accepted.
    type Edit = Box<dyn Fn(&mut Value, &str)>;
    let cases: Vec<(&str, Edit, bool)> = vec![
        (
            "invalid issuer",
            Box::new(|c, _| c["iss"] = json!("http://eve.invalid")),
            false,
        ),
        (
            "invalid audience",
            Box::new(|c, _| c["aud"] = json!("http://eve.invalid")),
            false,
        ),
        (
            "expired",
            Box::new(|c, _| {
                c["exp"] = json!(now() - 10000);
                c["iat"] = json!(now() - 10020);
            }),
            false,
        ),
        (
            "expired within leeway",
            Box::new(|c, _| {
                c["exp"] = json!(now() - 30);
                c["iat"] = json!(now() - 50);
            }),
            true,
        ),
        (
            "future iat",
            Box::new(|c, _| {
                c["exp"] = json!(now() + 10020);
                c["iat"] = json!(now() + 10000);
            }),
            false,
        ),
        (
            "float exp",
            Box::new(|c, _| c["exp"] = json!(now() as f64 + 5.5)),
            true,
        ),
        (
            "float iat",
            Box::new(|c, _| c["iat"] = json!(now() as f64 - 0.5)),
            true,
        ),
        (
            "future iat within leeway",
            Box::new(|c, _| {
                c["exp"] = json!(now() + 50);
                c["iat"] = json!(now() + 30);
            }),
            true,
        ),
        (
            "email changed",
            Box::new(|c, _| c["email"] = json!("jane@example.com")),
            false,
        ),
        (
            "email_original changed",
            Box::new(|c, _| c["email_original"] = json!("jane@example.com")),
            false,
        ),
        (
            "invalid nonce",
            Box::new(|c, _| c["nonce"] = json!("definitely not something the client generates")),
            false,
        ),
    ];
    for (name, edit, accept) in cases {
        let (aud, nonce) = adapter.auth(&broker, john, "").await;
        let mut claims = payload(&broker, &aud, &nonce, john);
        edit(&mut claims, &nonce);
        let (status, _) = adapter.verify(&broker.token(&claims)).await;
        assert_eq!(status, if accept { "ok" } else { "err" }, "{name}");
    }

    // server normalization
    let sent = "İⅢ@İⅢ.example";
    let normalized = "i̇ⅲ@xn--iiii-qwc.example";
    let (aud, nonce) = adapter.auth(&broker, sent, "").await;
    let mut claims = payload(&broker, &aud, &nonce, normalized);
    claims["email_original"] = json!(sent);
    assert_eq!(
        adapter.verify(&broker.token(&claims)).await,
        ("ok".into(), normalized.into())
    );

    // custom server normalization
    let (aud, nonce) = adapter.auth(&broker, john, "").await;
    let mut claims = payload(&broker, &aud, &nonce, "jane@example.com");
    claims["email_original"] = json!(john);
    assert_eq!(
        adapter.verify(&broker.token(&claims)).await,
        ("ok".into(), "jane@example.com".into())
    );

    // nonce reuse
    let (aud, nonce) = adapter.auth(&broker, john, "").await;
    assert_eq!(
        adapter
            .verify(&broker.token(&payload(&broker, &aud, &nonce, john)))
            .await
            .0,
        "ok"
    );
    assert_eq!(
        adapter
            .verify(&broker.token(&payload(&broker, &aud, &nonce, john)))
            .await
            .0,
        "err",
        "nonce reuse"
    );

    // invalid key id, bad signature, alg changed from the key's
    let signed: Vec<(&str, Value, Signature<'_>)> = vec![
        (
            "invalid key id",
            json!({"alg": "RS256", "kid": "bad key"}),
            Signature::Rs256(&BROKER_KEY),
        ),
        (
            "bad signature",
            rs256_header(),
            Signature::Rs256(&FORGER_KEY),
        ),
        (
            "alg from jwk",
            json!({"alg": "RS384", "kid": BROKER_KEY.kid}),
            Signature::Rs384(&BROKER_KEY),
        ),
    ];
    for (name, header, signature) in signed {
        let (aud, nonce) = adapter.auth(&broker, john, "").await;
        let token = sign(&header, &payload(&broker, &aud, &nonce, john), signature);
        assert_eq!(adapter.verify(&token).await.0, "err", "{name}");
    }

    // caching
    assert_eq!(
        broker.discovery_fetches.load(SeqCst),
        1,
        "discovery requested just once"
    );
    assert_eq!(
        broker.key_fetches.load(SeqCst),
        1,
        "keys requested just once"
    );

    drop(adapter.stdin);
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), adapter.child.wait())
        .await
        .expect("the adapter exits when its input closes")
        .expect("wait");
    assert!(status.success(), "clean exit");
}
