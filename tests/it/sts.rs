//! Credentials through a real STS-protocol server (moto): AssumeRole with an external ID, web
//! identity from a token file or the standard variables, and roles chained on top of them.
//! Each test shows which session signed the writes: the proxy records the access key of every
//! request, and moto lists the sessions it handed out.

use audit_exporter::sink;

use crate::check::assert_exactly_once;
use crate::cli::{audit_exporter, stderr};
use crate::harness::{TestDb, settings};
use crate::moto::{
    self, CHAINED_EXTERNAL_ID, CHAINED_ROLE, HOP_ROLE, WRITER_EXTERNAL_ID, WRITER_ROLE,
};
use crate::proxy::{Proxy, Seen, is_assume_role, is_put_object};
use crate::sts_verify::own_role_session;
use crate::{append, destination, export_now, exporter};

/// The access keys that signed the object writes the proxy saw.
fn put_keys(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| is_put_object(s))
        .map(|s| s.access_key.clone().expect("a signed write"))
        .collect()
}

/// The access key of the session STS granted for `role` under `session_name`, which must be
/// among `keys`.
fn session_key(seen: &[Seen], role: &str, session_name: &str, keys: &[String]) -> String {
    seen.iter()
        .filter_map(|s| s.issued.clone())
        .find(|(r, name, key)| r == role && name == session_name && keys.contains(key))
        .unwrap_or_else(|| panic!("no session of {role} named {session_name} signed {keys:?}"))
        .2
}

#[tokio::test]
async fn assume_role_writes_with_the_role_session_and_keeps_it() {
    let moto = moto::enforced();
    let proxy = Proxy::start(&moto.endpoint);
    let db = TestDb::new().await;
    let bucket = moto.bucket(false).await;
    let env = moto::destination_env(
        "acme",
        &bucket,
        &proxy.endpoint,
        &[
            ("ACCESS_KEY_ID", &moto.exporter.id),
            ("SECRET_ACCESS_KEY", &moto.exporter.secret),
            ("ROLE_ARN", WRITER_ROLE),
            ("EXTERNAL_ID", WRITER_EXTERNAL_ID),
            ("STS_ENDPOINT", &proxy.endpoint),
        ],
    );
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    append(&db, 5, None).await;
    export_now(&exporter, &settings, "acme").await;
    // The second export (a heartbeat) goes through another sink of the same destination in
    // `run`; here the same sink is reused, so the session must be too.
    let dest = destination(&settings, "acme");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    for _ in 0..2 {
        exporter
            .export(dest, sink.as_ref(), audit_exporter::export::When::Now)
            .await
            .unwrap();
    }

    let objects = moto.objects(&bucket, "exports/").await;
    assert_eq!(assert_exactly_once(&db, "acme", None, &objects).await, 2);

    let seen = proxy.seen();
    let assumed: Vec<&Seen> = seen.iter().filter(|s| is_assume_role(s)).collect();
    assert_eq!(
        assumed.len(),
        2,
        "one session per sink, kept across its exports"
    );
    assert!(
        assumed
            .iter()
            .all(|s| s.access_key.as_deref() == Some(moto.exporter.id.as_str()))
    );
    let keys = put_keys(&seen);
    assert_eq!(keys.len(), 3);
    for key in &keys {
        assert_ne!(key, &moto.exporter.id);
        session_key(
            &seen,
            WRITER_ROLE,
            "audit-exporter",
            std::slice::from_ref(key),
        );
    }

    // The exporter's own identity may not write to the bucket: only the role's session can.
    let env = moto::destination_env(
        "base",
        &bucket,
        &moto.endpoint,
        &[
            ("ACCESS_KEY_ID", &moto.exporter.id),
            ("SECRET_ACCESS_KEY", &moto.exporter.secret),
        ],
    );
    let settings = crate::harness::settings(&db, env);
    let dest = destination(&settings, "base");
    let sink = sink::connect(dest, &settings.exporter).await.unwrap();
    let error = exporter
        .export(dest, sink.as_ref(), audit_exporter::export::When::Now)
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("AccessDenied"), "{error:#}");
}

#[tokio::test]
async fn a_web_identity_token_file_alone_and_with_a_chained_role() {
    let moto = moto::open();
    let proxy = Proxy::start(&moto.endpoint);
    let db = TestDb::new().await;
    let bucket = moto.bucket(false).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.oidc-token.signature\n").unwrap();
    let token = token.to_str().unwrap();
    let mut env = moto::destination_env(
        "direct",
        &bucket,
        &proxy.endpoint,
        &[
            ("WEB_IDENTITY_TOKEN_FILE", token),
            ("ROLE_ARN", WRITER_ROLE),
            ("SESSION_NAME", "oidc-direct"),
            ("STS_ENDPOINT", &proxy.endpoint),
        ],
    );
    env.extend(moto::destination_env(
        "chained",
        &bucket,
        &proxy.endpoint,
        &[
            ("WEB_IDENTITY_TOKEN_FILE", token),
            ("WEB_IDENTITY_ROLE_ARN", HOP_ROLE),
            ("ROLE_ARN", CHAINED_ROLE),
            ("EXTERNAL_ID", CHAINED_EXTERNAL_ID),
            ("SESSION_NAME", "oidc-chained"),
            ("STS_ENDPOINT", &proxy.endpoint),
        ],
    ));
    env.push((
        "AUDIT_EXPORTER__DESTINATIONS__CHAINED__URL".into(),
        format!("s3://{bucket}/chained"),
    ));
    let settings = settings(&db, env);
    let exporter = exporter(&db, &settings);
    append(&db, 3, None).await;

    export_now(&exporter, &settings, "direct").await;
    let seen = proxy.seen();
    let exchange = seen
        .iter()
        .find(|s| s.action.as_deref() == Some("AssumeRoleWithWebIdentity"))
        .expect("the token was exchanged");
    assert_eq!(exchange.access_key, None, "the exchange is unsigned");
    let keys = put_keys(&seen);
    session_key(&seen, WRITER_ROLE, "oidc-direct", &keys);

    export_now(&exporter, &settings, "chained").await;
    let seen = proxy.seen();
    let hop_key = session_key(
        &seen,
        HOP_ROLE,
        "oidc-chained",
        &seen
            .iter()
            .filter(|s| is_assume_role(s))
            .filter_map(|s| s.access_key.clone())
            .collect::<Vec<_>>(),
    );
    let chained_keys = put_keys(
        &seen[seen
            .iter()
            .position(|s| s.access_key.as_ref() == Some(&hop_key))
            .unwrap()..],
    );
    session_key(&seen, CHAINED_ROLE, "oidc-chained", &chained_keys);

    assert_exactly_once(
        &db,
        "direct",
        None,
        &moto.objects(&bucket, "exports/").await,
    )
    .await;
    assert_exactly_once(
        &db,
        "chained",
        None,
        &moto.objects(&bucket, "chained/").await,
    )
    .await;
}

/// The environment of a process whose only AWS credentials are those given.
fn isolated_aws_env(home: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), home.display().to_string()),
        (
            "AWS_CONFIG_FILE".into(),
            home.join("none").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            home.join("none").display().to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

pub(crate) fn run_cli(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    audit_exporter(args, &env)
}

#[tokio::test]
async fn the_standard_web_identity_variables_and_a_role_chained_on_the_default_chain() {
    let db = TestDb::new().await;
    let home = tempfile::tempdir().unwrap();
    append(&db, 4, None).await;

    // AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, as a Kubernetes service account sets them.
    let open = moto::open();
    let proxy = Proxy::start(&open.endpoint);
    let bucket = open.bucket(false).await;
    let token = home.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.k8s-token.signature").unwrap();
    let mut env = isolated_aws_env(home.path());
    env.extend([
        ("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
            token.display().to_string(),
        ),
        ("AWS_ROLE_ARN".into(), WRITER_ROLE.into()),
        ("AWS_ROLE_SESSION_NAME".into(), "k8s-service-account".into()),
        ("AWS_ENDPOINT_URL_STS".into(), proxy.endpoint.clone()),
    ]);
    env.extend(moto::destination_env("k8s", &bucket, &proxy.endpoint, &[]));
    let output = run_cli(&["export"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let seen = proxy.seen();
    session_key(&seen, WRITER_ROLE, "k8s-service-account", &put_keys(&seen));
    assert_exactly_once(&db, "k8s", None, &open.objects(&bucket, "exports/").await).await;

    // The exporter's own role session in the environment (as on EC2 or ECS), and the
    // customer's role assumed from it with the external ID. The own role may not write.
    let moto = moto::enforced();
    let bucket = moto.bucket(false).await;
    let own = own_role_session(moto).await;
    let mut env = isolated_aws_env(home.path());
    env.extend([
        ("AUDIT_EXPORTER__DATABASE__URL".into(), db.url.clone()),
        ("AWS_ACCESS_KEY_ID".into(), own.access_key_id().to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            own.secret_access_key().to_owned(),
        ),
        ("AWS_SESSION_TOKEN".into(), own.session_token().to_owned()),
    ]);
    env.extend(moto::destination_env(
        "customer",
        &bucket,
        &moto.endpoint,
        &[
            ("ROLE_ARN", CHAINED_ROLE),
            ("EXTERNAL_ID", CHAINED_EXTERNAL_ID),
            ("STS_ENDPOINT", &moto.endpoint),
        ],
    ));
    env.push(("AUDIT_EXPORTER__LOG__LEVEL".into(), "debug".into()));
    let output = run_cli(&["export", "--destination", "customer"], &env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    assert!(
        printed.contains("Received a role session from STS."),
        "{printed}"
    );
    for secret in [own.secret_access_key(), own.session_token()] {
        assert!(!printed.contains(secret), "a secret was printed: {printed}");
    }
    assert_exactly_once(
        &db,
        "customer",
        None,
        &moto.objects(&bucket, "exports/").await,
    )
    .await;
}
