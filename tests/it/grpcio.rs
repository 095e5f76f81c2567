//! A real third-party gRPC client: Python grpcio with stubs generated from `proto/`.

use std::process::Command;

use crate::helpers::{python, run, spawn_app, tempdir};

#[tokio::test]
async fn python_grpcio_stubs_create_list_and_delete_with_grpc_status_codes() {
    let app = spawn_app().await;
    let token = app.token(&["acme"]).await;
    let stubs = tempdir("grpcio-stubs");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut generate = Command::new(python());
    generate.args([
        "-c",
        "import grpc_tools, os, sys; from grpc_tools import protoc; \
        inc = os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'); \
        sys.exit(protoc.main(['protoc', '-I' + sys.argv[1] + '/proto', '-I' + inc, \
        '--python_out=' + sys.argv[2], '--grpc_python_out=' + sys.argv[2], \
        'buf/alpha/registry/v1alpha1/webhook.proto']))",
    ]);
    generate.arg(root).arg(&stubs);
    let (code, out, err) = run(generate).await;
    assert_eq!(code, 0, "generating stubs failed: {out}{err}");

    let mut client = Command::new(python());
    client
        .arg(format!("{root}/tests/clients/grpcio_client.py"))
        .arg(&stubs)
        .arg(app.addr.to_string())
        .arg(&token)
        .arg(app.callback("grpcio"));
    let (code, out, err) = run(client).await;
    assert_eq!(code, 0, "grpcio client failed: {out}{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let created = &result["created"];
    assert_eq!(
        (created["owner"].as_str(), created["repository"].as_str()),
        (Some("acme"), Some("petapis"))
    );
    assert_eq!(created["event"], 1);
    assert_eq!(created["same_times"], true);
    assert_eq!(result["listed"], serde_json::json!([created["id"]]));
    assert_eq!(result["delete_again"]["code"], "NOT_FOUND");
    assert_eq!(result["no_token"]["code"], "UNAUTHENTICATED");
    assert_eq!(result["bad_event"]["code"], "INVALID_ARGUMENT");
    assert!(
        result["bad_event"]["details"]
            .as_str()
            .unwrap()
            .contains("WEBHOOK_EVENT_REPOSITORY_PUSH")
    );
}
