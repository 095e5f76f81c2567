//! The protos themselves: `buf build` and `buf lint` pass on the repository's buf.yaml.

use std::process::Command;

use crate::helpers::{buf, run, tempdir};

#[tokio::test]
async fn buf_build_and_buf_lint_pass() {
    let cache = tempdir("buf-lint-cache");
    for step in ["build", "lint"] {
        let mut command = Command::new(buf());
        command
            .arg(step)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("BUF_CACHE_DIR", &cache);
        let (code, out, err) = run(command).await;
        assert_eq!(code, 0, "buf {step}: {out}{err}");
    }
}
