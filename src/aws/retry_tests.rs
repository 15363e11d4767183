//! One retry layer, counted: a local HTTP server that answers every request with EC2's
//! throttling error, and the real SDK clients tap builds pointed at it.

use super::{Aws, Connection, RetryBudget, no_retry_ec2};
use crate::aws::SendExt;
use crate::engine::reconcile::Driver;
use crate::engine::resource::ErrorClass;
use crate::engine::state::State;
use crate::engine::store::StateStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const THROTTLED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>\
    <Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors>\
    <RequestID>r</RequestID></Response>";

/// Serves until dropped; counts the requests it answered.
async fn throttling_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + 4 + len);
                    c.fetch_add(1, Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{THROTTLED}",
                        THROTTLED.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count)
}

async fn aws(url: &str, budget: RetryBudget) -> Aws {
    let conn = Connection {
        endpoint_url: Some(url.to_string()),
        test_credentials_fallback: true,
        retry: budget,
    };
    Aws::connect(&conn, "us-east-1").await
}

fn budget(n: u32) -> RetryBudget {
    RetryBudget {
        max_attempts: n,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    }
}

#[tokio::test]
async fn a_throttled_call_is_attempted_exactly_the_budgeted_number_of_times() {
    let (url, count) = throttling_server().await;
    let aws = aws(&url, budget(4)).await;
    let store = Arc::new(StateStore::new(
        std::env::temp_dir().join("tap-unused.json"),
        State::new(),
        true,
    ));
    let driver = Driver::new(store, 2, Arc::default(), false);
    let cx = crate::engine::resource::test_cx("primary/vpc", "vpc");
    let ec2 = aws.ec2("us-east-1");

    // An ordinary call, through the driver: the SDK's four attempts, and not one more.
    let e = driver
        .call(&cx, || async { ec2.describe_vpcs().send().await.op("DescribeVpcs") })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.class),
        ("RequestLimitExceeded", ErrorClass::Throttled)
    );
    assert_eq!(count.swap(0, Ordering::SeqCst), 4);

    // A create without an idempotency token: the SDK sends it once; the create protocol decides.
    let e = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .customize()
        .config_override(no_retry_ec2())
        .send()
        .await
        .op("CreateVpc")
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Throttled);
    assert_eq!(count.swap(0, Ordering::SeqCst), 1);

    // Another budget, another count: the number comes from the budget, not from a second loop.
    let aws = self::aws(&url, budget(2)).await;
    let _ = aws.ec2("us-east-1").describe_vpcs().send().await;
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

/// Regression (a fault-mode run failed "refused the credentials: Throttling"): a preflight whose
/// STS calls are throttled or answered 503 after its quick retries is no verdict on the
/// credentials; the run goes on.
#[tokio::test]
async fn a_throttled_preflight_is_not_a_credentials_failure() {
    let (url, count) = throttling_server().await;
    let aws = aws(&url, budget(4)).await;
    aws.preflight(&["us-east-1", "eu-west-1"]).await.unwrap();
    assert!(count.load(Ordering::SeqCst) >= 2, "both regions were asked");
}
