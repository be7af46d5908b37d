//! `GET /api/v1/usage` over real HTTP: reports over requests sent through Carpool to the
//! mock upstream, in a requested time zone, zero-filled, with top-N; the CSV download;
//! the 422s that name the bad parameter; and the OpenAPI document describing what is
//! really sent.

mod common;

use std::collections::BTreeSet;

use carpool::RunningServer;
use common::*;
use jiff::Zoned;
use jiff::tz::TimeZone;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// claude-sonnet-4-5 at $3 / $15 per million: 25 × 3 + 12 × 15 micro-dollars.
const SONNET_COST: i64 = 255;
/// Nepal's offset is +05:45: not a whole number of hours, so the report is read from
/// the requests table by quarter hours, the hard case.
const ZONE: &str = "Asia/Kathmandu";

async fn ask_as(carpool: &RunningServer, token: &str, model: &str, stream: bool) {
    let mut body = message_body(stream);
    body["model"] = json!(model);
    let response = client()
        .post(format!("{}/v1/messages", carpool.url()))
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

/// Carpool with the API, after alice asked sonnet twice and bob asked haiku once; every
/// record is written.
async fn with_history(setup: &Setup) -> Managed {
    let api = setup.start_managed().await;
    ask_as(&api.server, ALICE_TOKEN, "claude-sonnet-4-5-20250929", true).await;
    ask_as(
        &api.server,
        ALICE_TOKEN,
        "claude-sonnet-4-5-20250929",
        false,
    )
    .await;
    ask_as(&api.server, BOB_TOKEN, "claude-haiku-4-5", false).await;
    api.server.engine.ledger.flush_async().await;
    api
}

async fn usage(api: &Managed, query: &str) -> reqwest::Response {
    api.admin(Method::GET, &format!("/usage?{query}"))
        .send()
        .await
        .unwrap()
}

async fn usage_json(api: &Managed, query: &str) -> Value {
    let response = usage(api, query).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

/// Yesterday and today, as dates in `ZONE`.
fn days() -> (String, String) {
    let today = Zoned::now()
        .with_time_zone(TimeZone::get(ZONE).unwrap())
        .date();
    (today.yesterday().unwrap().to_string(), today.to_string())
}

#[tokio::test]
async fn a_report_in_a_requested_zone_is_zero_filled_grouped_and_cut_to_the_top_n() {
    let setup = Setup::new().await;
    let api = with_history(&setup).await;
    let (yesterday, today) = days();

    // By day and user over yesterday and today in Kathmandu, alice kept, bob as other.
    let report = usage_json(
        &api,
        &format!("since={yesterday}&until={today}&tz={ZONE}&bucket=day&group=user&top=1"),
    )
    .await;
    assert_eq!(report["time_zone"], ZONE);
    assert_eq!(report["bucket"], "day");
    assert_eq!(report["group"], "user");
    assert_eq!(report["top"], 1);
    assert_eq!(
        report["since"],
        format!("{yesterday}T00:00:00+05:45[{ZONE}]"),
        "the range is read in the requested zone"
    );
    let rows = report["rows"].as_array().unwrap();
    let shape: Vec<(&str, Value, bool, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["bucket"].as_str().unwrap(),
                r["user"].clone(),
                r["other"].as_bool().unwrap(),
                r["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (yesterday.as_str(), Value::Null, false, 0),
            (today.as_str(), json!("alice"), false, 2),
            (today.as_str(), Value::Null, true, 1),
        ],
        "a zero row for yesterday, then alice and the rest: {report:#}"
    );
    assert_eq!(
        rows[0]["bucket_start"],
        format!("{yesterday}T00:00:00+05:45[{ZONE}]")
    );
    assert_eq!(
        rows[0]["bucket_end"],
        format!("{today}T00:00:00+05:45[{ZONE}]")
    );
    assert_eq!(rows[1]["cost_micros"], 2 * SONNET_COST);
    assert_eq!(rows[1]["input_tokens"], 2 * mock::INPUT_TOKENS);
    let bob_cost = rows[2]["cost_micros"].as_i64().unwrap();
    assert!(bob_cost > 0 && bob_cost < SONNET_COST, "haiku costs less");
    let total = &report["total"];
    assert_eq!(total["requests"], 3);
    assert_eq!(total["cost_micros"], 2 * SONNET_COST + bob_cost);
    assert_eq!(total["errors"], 0);

    // Today by hour: all 24 hours of the local day, the requests in the hours they came.
    let report = usage_json(&api, &format!("range=today&tz={ZONE}&bucket=hour")).await;
    let hours = report["rows"].as_array().unwrap();
    assert_eq!(hours.len(), 24, "Nepal has no daylight saving: {report:#}");
    assert_eq!(hours[0]["bucket"], format!("{today} 00:00"));
    assert_eq!(hours[23]["bucket"], format!("{today} 23:00"));
    let counted: i64 = hours.iter().map(|h| h["requests"].as_i64().unwrap()).sum();
    assert_eq!(counted, 3);
    let hour_now = Zoned::now()
        .with_time_zone(TimeZone::get(ZONE).unwrap())
        .strftime("%Y-%m-%d %H:00")
        .to_string();
    let used: Vec<&str> = hours
        .iter()
        .filter(|h| h["requests"] != 0)
        .map(|h| h["bucket"].as_str().unwrap())
        .collect();
    assert!(
        used.iter().all(|h| *h <= hour_now.as_str()),
        "{used:?} after {hour_now}"
    );

    // Not bucketed, by model: one row per model, costliest first; filters apply.
    let report = usage_json(&api, "range=7d&tz=UTC&bucket=none&group=model").await;
    let models: Vec<(&str, i64)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap(),
                r["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        models,
        [("claude-sonnet-4-5-20250929", 2), ("claude-haiku-4-5", 1)]
    );
    assert!(report["rows"][0].get("bucket").is_none());
    let report = usage_json(&api, "range=7d&tz=UTC&bucket=none&user=bob").await;
    assert_eq!(report["total"]["requests"], 1);
    let report = usage_json(&api, "range=7d&tz=UTC&bucket=none&group=account").await;
    assert_eq!(report["group"], "credential");
    assert_eq!(report["rows"][0]["credential"], "main");
    api.server.shutdown().await;
}

/// The CSV download is what `carpool usage --csv` prints for the same question.
#[tokio::test]
async fn the_csv_download_has_the_cli_columns() {
    let setup = Setup::new().await;
    let api = with_history(&setup).await;
    let (yesterday, today) = days();
    let question = format!("since={yesterday}&until={today}&tz={ZONE}&bucket=day&group=user");

    let response = usage(&api, &format!("{question}&format=csv")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"carpool-usage-{yesterday}-{today}.csv\"").as_str()
    );
    let csv = response.text().await.unwrap();

    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_carpool"))
        .args(["usage", "--csv", "--by", "day,user", "--tz", ZONE])
        .args(["--since", &yesterday, "--until", &today])
        .arg("--database")
        .arg(setup.dir.path().join("usage.db"))
        .output()
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    assert_eq!(csv, String::from_utf8(cli.stdout).unwrap());
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("bucket,user,requests,errors,"),
        "{csv}"
    );
    assert_eq!(
        lines.len(),
        1 + 3,
        "yesterday's zero row, alice, bob: {csv}"
    );
    assert!(lines[1].starts_with(&format!("{yesterday},,0,")), "{csv}");
    assert!(lines[2].starts_with(&format!("{today},alice,2,")), "{csv}");

    // `Accept: text/csv` asks for the same; an explicit format wins over it.
    let by_accept = api
        .admin(Method::GET, &format!("/usage?{question}"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(by_accept.text().await.unwrap(), csv);
    let json = api
        .admin(Method::GET, &format!("/usage?{question}&format=json"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(json.headers()["content-type"], "application/json");
    api.server.shutdown().await;
}

#[tokio::test]
async fn bad_parameters_get_a_422_naming_them() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    for (query, named) in [
        ("tz=Mars/Olympus", "tz: `Mars/Olympus` is not a time zone"),
        ("since=soon", "since `soon` is not a time"),
        ("until=2026-13-01", "until `2026-13-01` is not a time"),
        ("since=today&until=yesterday", "the range is empty"),
        ("range=forever", "range: `forever` is not a named range"),
        ("range=7d&since=today", "range: give either"),
        ("bucket=week", "bucket: unknown variant `week`"),
        ("group=colour", "group: unknown variant `colour`"),
        ("top=many&group=user", "top: invalid digit"),
        (
            "top=3",
            "top: keeps the costliest groups, so it needs `group`",
        ),
        ("groupby=user", "unknown field `groupby`"),
        ("format=xlsx", "format: unknown variant `xlsx`"),
        (
            "since=2000-01-01&bucket=hour",
            "bucket: the range holds more than 100000 periods of one hour",
        ),
    ] {
        let response = usage(&api, query).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid", "{query}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{query}: {message}");
    }
    // Without the admin secret: nothing.
    let anonymous = client().get(api.url("/usage")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    api.server.shutdown().await;
}

/// The schema named `name`, its `$ref`s and `allOf`s followed: (every property, the
/// required ones).
fn properties(doc: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut all = BTreeSet::new();
    let mut required = BTreeSet::new();
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return properties(doc, &doc["components"]["schemas"][name]);
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (a, r) = properties(doc, part);
        all.extend(a);
        required.extend(r);
    }
    if let Some(props) = schema["properties"].as_object() {
        all.extend(props.keys().cloned());
    }
    for name in schema["required"].as_array().into_iter().flatten() {
        required.insert(name.as_str().unwrap().to_owned());
    }
    (all, required)
}

/// A served object against its schema: every key is in the schema, every required key
/// is there.
fn matches(doc: &Value, schema: &Value, served: &Value) -> Result<(), String> {
    let (all, required) = properties(doc, schema);
    if all.is_empty() {
        return Err("the schema has no properties".into());
    }
    let keys: BTreeSet<String> = served.as_object().unwrap().keys().cloned().collect();
    let unknown: Vec<_> = keys.difference(&all).collect();
    let missing: Vec<_> = required.difference(&keys).collect();
    if unknown.is_empty() && missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fields the schema lacks: {unknown:?}; required fields not sent: {missing:?}"
        ))
    }
}

fn check(doc: &Value, schema: &Value, served: &Value, what: &str) {
    if let Err(problem) = matches(doc, schema, served) {
        panic!("{what}: {problem}\n{served:#}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_report_as_it_is_served() {
    let setup = Setup::new().await;
    let api = with_history(&setup).await;
    let doc: Value = api
        .admin(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ok = &doc["paths"]["/api/v1/usage"]["get"]["responses"]["200"]["content"];
    let report_schema = &ok["application/json"]["schema"];
    assert_eq!(report_schema["$ref"], "#/components/schemas/UsageReport");
    assert!(ok["text/csv"].is_object());
    let row_schema = &doc["components"]["schemas"]["UsageReport"]["properties"]["rows"]["items"];
    let total_schema = &doc["components"]["schemas"]["UsageReport"]["properties"]["total"];
    let params: Vec<&str> = doc["paths"]["/api/v1/usage"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "since", "until", "range", "bucket", "group", "top", "tz", "format",
    ] {
        assert!(params.contains(&name), "{name} in {params:?}");
    }

    for query in [
        "range=7d&tz=Europe/Berlin&bucket=day&group=user&top=1",
        "range=today&tz=UTC&bucket=hour",
        "range=7d&bucket=none&group=session",
        "range=7d&bucket=none",
    ] {
        let report = usage_json(&api, query).await;
        check(&doc, report_schema, &report, query);
        check(&doc, total_schema, &report["total"], "total");
        let rows = report["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{query}");
        for row in rows {
            check(&doc, row_schema, row, query);
        }
    }
    // The check can fail: a made-up field, a required one left out.
    let mut total = usage_json(&api, "range=7d").await["total"].clone();
    assert!(matches(&doc, total_schema, &total).is_ok());
    total["made_up"] = json!(2);
    assert!(matches(&doc, total_schema, &total).is_err());
    total.as_object_mut().unwrap().remove("made_up");
    total.as_object_mut().unwrap().remove("cost_usd");
    assert!(matches(&doc, total_schema, &total).is_err());
    api.server.shutdown().await;
}

#[tokio::test]
async fn recent_requests_are_newest_first_and_the_failed_ones_can_be_asked_for() {
    let setup = Setup::new().await;
    let api = with_history(&setup).await;
    // The upstream refuses the next one: the client gets its 400.
    setup.mock.push(Reply::Status {
        status: 400,
        headers: vec![("content-type".into(), "application/json".into())],
        body:
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
                .to_string(),
    });
    let response = client()
        .post(format!("{}/v1/messages", api.server.url()))
        .bearer_auth(BOB_TOKEN)
        .header("anthropic-version", "2023-06-01")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    response.bytes().await.unwrap();
    api.server.engine.ledger.flush_async().await;

    let (status, all) = api
        .call(Method::GET, "/requests/recent?limit=3", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let shape: Vec<(Value, Value, Value)> = all["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["user"].clone(), r["status"].clone(), r["failed"].clone()))
        .collect();
    assert_eq!(
        shape,
        [
            (json!("bob"), json!(400), json!(true)),
            (json!("bob"), json!(200), json!(false)),
            (json!("alice"), json!(200), json!(false)),
        ],
        "newest first, cut to the limit: {all:#}"
    );

    let (status, failed) = api
        .call(Method::GET, "/requests/recent?failed=true", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let failed = failed["requests"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let row = &failed[0];
    assert_eq!(row["account"], "main");
    assert_eq!(row["endpoint"], "messages");
    assert!(row["at"].as_str().unwrap().ends_with('Z'));
    // Metadata only: nothing of the prompt or the answer, no token.
    let text = row.to_string();
    assert!(!text.contains("bad") && !text.contains(BOB_TOKEN), "{text}");

    let (status, error) = api
        .call(Method::GET, "/requests/recent?limit=0", None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("limit: ")
    );
}
