//! The dashboard in a real browser: `switchyard serve` with mock upstreams and the JS
//! keyword policy takes traffic from two tenants, one over its budget; headless Chromium
//! loads `/ui`, is refused with a wrong token, signs in, and the page's decisions, spend,
//! backend states and policy versions must match the responses' headers, `switchyard
//! spend` and the admin API; its rollback button must change the live version.
//! Screenshots land in `target/ui-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_support;
mod gateway_support;

use browser_support::{Browser, screenshot_dir};
use gateway_support::{ADMIN_TOKEN, Gateway, built_policy, label, scratch};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[policy.params]
local_keywords = "summarize,classify"
cloud_keywords = "implement,prove"

[tenants.acme]
daily_budget_usd = 10
monthly_budget_usd = 100
hard_cap_usd = 200

[tenants.broke]
daily_budget_usd = 0.00005
monthly_budget_usd = 0.00006
hard_cap_usd = 0.0001
"#;

/// What a response said about its decision.
#[derive(Debug)]
struct Served {
    status: u16,
    request_id: String,
    policy: String,
    reason: String,
    backend: String,
    cost: String,
}

async fn chat(gateway: &Gateway, client: &reqwest::Client, text: &str, tenant: &str) -> Served {
    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .header("x-switchyard-tenant", tenant)
        .json(&json!({"model": "auto", "max_tokens": 5,
            "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    Served {
        status: response.status().as_u16(),
        request_id: header("x-request-id"),
        policy: header("x-switchyard-policy"),
        reason: header("x-switchyard-reason"),
        backend: header("x-switchyard-backend"),
        cost: header("x-switchyard-cost-usd"),
    }
}

/// A JS string literal of `s`.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The text of the cell `cell` in the row whose `attr` is `value` (null when absent).
async fn cell(browser: &mut Browser, attr: &str, value: &str, cell: &str) -> Value {
    browser
        .eval(&format!(
            "(() => {{ const c = document.querySelector('[{attr}=' + CSS.escape({}) + '] [data-cell={cell}]'); \
             return c ? c.textContent : null; }})()",
            js(value)
        ))
        .await
}

async fn sign_in(browser: &mut Browser, token: &str) {
    browser
        .eval(&format!(
            "document.getElementById('token').value = {}; \
             document.querySelector('#login-form button[type=submit]').click(); true",
            js(token)
        ))
        .await;
}

async fn admin_policies(gateway: &Gateway, client: &reqwest::Client) -> Value {
    client
        .get(gateway.url("/admin/policies"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn usd6(v: &Value) -> String {
    format!("${:.6}", v.as_f64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_what_the_gateway_did() {
    // Slot `live`, its file without a case file beside it: any version may be uploaded.
    let other = built_policy("complexity");
    let scratch_dir = scratch("ui");
    let dir = scratch_dir.path();
    let policy = dir.join("live.wasm");
    std::fs::copy(built_policy("keyword"), &policy).unwrap();
    let local = gateway_support::spawn_upstream("from local").await;
    let cloud = gateway_support::spawn_upstream("from cloud").await;
    let config = gateway_support::write_config(dir, &policy, local, cloud, CONFIG);
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let keyword = label("live", &policy);

    let shots = screenshot_dir();
    let mut browser = Browser::launch(1280, 800, &shots.join("chromium.log")).await;
    browser.navigate(&gateway.url("/ui")).await;
    browser
        .wait_for("!document.getElementById('login').hidden", "the login form")
        .await;

    // Every control has a label or text; every action is a real button.
    let unlabelled = browser
        .eval(
            "[...document.querySelectorAll('input')].filter(i => !i.labels || !i.labels.length).length",
        )
        .await;
    assert_eq!(unlabelled, 0);

    // A wrong token: refused, the login again.
    sign_in(&mut browser, "wrong-token").await;
    browser
        .wait_for(
            "document.getElementById('login-error').textContent.includes('refused')",
            "the refusal",
        )
        .await;
    assert_eq!(
        browser
            .eval("[document.getElementById('login').hidden, document.getElementById('dashboard').hidden, sessionStorage.length]")
            .await,
        json!([false, true, 0])
    );
    browser.screenshot("login-wrong-token.png").await;

    // The right one: the dashboard, and the live stream connected.
    sign_in(&mut browser, ADMIN_TOKEN).await;
    browser
        .wait_for(
            "document.body.dataset.stream === 'connected'",
            "the live stream",
        )
        .await;
    let url = browser.eval("location.href").await;
    assert!(!url.as_str().unwrap().contains(ADMIN_TOKEN), "{url}");

    // Traffic: acme local and cloud; broke spends past its budgets, then hits its cap.
    let acme_local = chat(
        &gateway,
        &client,
        "Summarize this paragraph please.",
        "acme",
    )
    .await;
    let acme_cloud = chat(&gateway, &client, "Implement a B-tree in Rust.", "acme").await;
    let broke_first = chat(&gateway, &client, "Implement a parser.", "broke").await;
    let broke_capped = chat(&gateway, &client, "Implement a lexer.", "broke").await;
    assert_eq!(acme_local.status, 200);
    assert_eq!(acme_cloud.status, 200);
    assert_eq!(broke_first.status, 200);
    assert_eq!(broke_capped.status, 429, "{broke_capped:?}");
    assert_eq!(acme_local.backend, "local");
    assert_eq!(acme_cloud.backend, "openai");

    // Live: each served request's row says what its headers said.
    for served in [&acme_local, &acme_cloud, &broke_first] {
        browser
            .wait_for(
                &format!(
                    "document.querySelector('tr[data-request-id=' + CSS.escape({}) + ']')",
                    js(&served.request_id)
                ),
                "a decision row",
            )
            .await;
        let id = &served.request_id;
        let attr = "data-request-id";
        assert_eq!(
            cell(&mut browser, attr, id, "policy").await,
            served.policy.as_str()
        );
        assert_eq!(
            cell(&mut browser, attr, id, "reason").await,
            served.reason.as_str()
        );
        assert_eq!(
            cell(&mut browser, attr, id, "backend").await,
            served.backend.as_str()
        );
        assert_eq!(cell(&mut browser, attr, id, "status").await, "200");
        assert_eq!(cell(&mut browser, attr, id, "fallback").await, "no");
        assert_eq!(
            cell(&mut browser, attr, id, "cost").await,
            format!("${}", served.cost).as_str()
        );
        assert_eq!(served.policy, keyword);
    }
    // The capped request is there too, refused, with no backend.
    browser
        .wait_for(
            "[...document.querySelectorAll('#decisions tbody tr')].some(r => \
             r.querySelector('[data-cell=tenant]').textContent === 'broke' && \
             r.querySelector('[data-cell=status]').textContent === '429' && \
             r.querySelector('[data-cell=backend]').textContent === 'none')",
            "the 429 decision",
        )
        .await;
    // Filtering by tenant keeps only that tenant's rows.
    let filtered = browser
        .eval(
            "(() => { const f = document.getElementById('f-tenant'); f.value = 'broke'; \
             f.dispatchEvent(new Event('input')); \
             const t = [...document.querySelectorAll('#decisions tbody [data-cell=tenant]')].map(c => c.textContent); \
             f.value = ''; f.dispatchEvent(new Event('input')); return t; })()",
        )
        .await;
    assert_eq!(filtered, json!(["broke", "broke"]));
    // A chart per backend that served.
    browser
        .wait_for(
            "document.querySelector('.chart-card[data-backend=openai] svg polyline') && \
             document.querySelector('.chart-card[data-backend=local] svg polyline')",
            "the charts",
        )
        .await;

    // Spend: the page against `switchyard spend`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["spend", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spend: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = spend.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{spend}");
    for row in rows {
        let tenant = row["tenant"].as_str().unwrap();
        browser
            .wait_for(
                &format!(
                    "(document.querySelector('tr[data-tenant={tenant}] [data-cell=attempts]') || {{}}).textContent === '{}'",
                    row["attempts"]
                ),
                "the spend refresh",
            )
            .await;
        let attr = "data-tenant";
        assert_eq!(
            cell(&mut browser, attr, tenant, "today").await,
            usd6(&row["today_usd"])
        );
        assert_eq!(
            cell(&mut browser, attr, tenant, "month").await,
            usd6(&row["month_usd"])
        );
        assert_eq!(
            cell(&mut browser, attr, tenant, "cap").await,
            usd6(&row["hard_cap_usd"])
        );
        assert_eq!(
            cell(&mut browser, attr, tenant, "monthly").await,
            usd6(&row["monthly_budget_usd"])
        );
    }
    let broke = rows.iter().find(|r| r["tenant"] == "broke").unwrap();
    assert!(
        (broke["month_usd"].as_f64().unwrap() - 7.5e-5).abs() < 1e-12,
        "{broke}"
    );
    assert_eq!(
        cell(&mut browser, "data-tenant", "broke", "state").await,
        "over monthly budget"
    );
    assert_eq!(
        cell(&mut browser, "data-tenant", "acme", "state").await,
        "within budget"
    );

    // Backends: both healthy with closed breakers, as the overview API says.
    let overview: Value = client
        .get(gateway.url("/admin/overview"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for b in overview["backends"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        let health = if b["healthy"] == true {
            "healthy"
        } else {
            "unhealthy"
        };
        assert_eq!(health, "healthy");
        assert_eq!(
            cell(&mut browser, "data-backend", name, "health").await,
            health
        );
        assert_eq!(
            cell(&mut browser, "data-backend", name, "breaker").await,
            b["breaker"]
        );
        assert_eq!(b["breaker"], "closed");
    }

    // Policies: the live version as the admin API lists it.
    let listed = admin_policies(&gateway, &client).await;
    assert_eq!(listed["policies"][0]["live"]["policy"], keyword.as_str());
    assert_eq!(
        cell(&mut browser, "data-policy", "live", "live").await,
        keyword.as_str()
    );
    browser.screenshot("dashboard-1280x800.png").await;

    // A new version goes live through the admin API; the page shows it; its rollback
    // button brings the first one back.
    let (status, body) = gateway
        .admin(
            &client,
            "/admin/policies/live/versions",
            std::fs::read(&other).unwrap(),
        )
        .await;
    // Prepared in the background: the answer is at once, the page follows it.
    assert_eq!(status, 202, "{body}");
    let complexity = label("live", &other);
    browser
        .wait_for(
            &format!(
                "(document.querySelector('[data-policy=live] [data-cell=live]') || {{}}).textContent === {}",
                js(&complexity)
            ),
            "the uploaded version",
        )
        .await;
    // The upload's progress ends as live, on the page too.
    let digest = body["upload"]["digest"].as_str().unwrap();
    browser
        .wait_for(
            &format!(
                "((document.querySelector('[data-policy=live] [data-cell=uploads]') || {{}}).textContent || '').startsWith({})",
                js(&format!("{} (live): live after", &digest[..12]))
            ),
            "the upload's progress",
        )
        .await;
    browser.screenshot("policies-before-rollback.png").await;
    // The first press only asks for confirmation; nothing changes until the second.
    let rollback = "document.querySelector('button[data-action=rollback][data-policy=live]')";
    browser.eval(&format!("{rollback}.click(); true")).await;
    browser
        .wait_for(
            &format!(
                "{rollback}.dataset.armed === 'yes' && {rollback}.textContent.startsWith('Confirm')"
            ),
            "the rollback's confirmation",
        )
        .await;
    let listed = admin_policies(&gateway, &client).await;
    assert_eq!(listed["policies"][0]["live"]["policy"], complexity.as_str());
    browser.screenshot("policies-confirm-rollback.png").await;
    browser.eval(&format!("{rollback}.click(); true")).await;
    browser
        .wait_for(
            &format!(
                "(document.querySelector('[data-policy=live] [data-cell=live]') || {{}}).textContent === {}",
                js(&keyword)
            ),
            "the rolled-back version",
        )
        .await;
    let result = browser
        .eval("document.getElementById('policy-result').textContent")
        .await;
    assert!(
        result
            .as_str()
            .unwrap()
            .contains(&format!("{complexity} → {keyword}")),
        "{result}"
    );
    let listed = admin_policies(&gateway, &client).await;
    assert_eq!(listed["policies"][0]["live"]["policy"], keyword.as_str());
    let after = chat(&gateway, &client, "Summarize again.", "acme").await;
    assert_eq!(after.policy, keyword);
    browser.screenshot("policies-after-rollback.png").await;

    // Nothing but this gateway was fetched.
    let foreign = browser
        .eval(&format!(
            "performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith({}))",
            js(&gateway.url("/"))
        ))
        .await;
    assert_eq!(foreign, json!([]));

    // Phone width: the same page, one column.
    browser.viewport(390, 844, true).await;
    browser.screenshot("dashboard-phone.png").await;
    let overflow = browser
        .eval("document.querySelector('main').scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(overflow, true, "the page is wider than a phone screen");

    // The token stops working (signed out elsewhere): the login again.
    browser
        .eval("sessionStorage.setItem('switchyard.adminToken', 'stale'); location.reload(); true")
        .await;
    browser
        .wait_for(
            "document.readyState === 'complete' && !document.getElementById('login').hidden && \
             document.getElementById('login-error').textContent.includes('refused')",
            "the login after a stale token",
        )
        .await;
    browser.close().await;
}
