//! The management API over real HTTP: admin access, the OpenAPI document, and each
//! resource.

mod common;

use common::Setup;
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn status_needs_the_admin_secret_and_shows_every_account() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;

    let anonymous = common::client()
        .get(api.url("/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    // A relay user's token is not the admin secret.
    let as_user = common::client()
        .get(api.url("/status"))
        .bearer_auth(common::ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(as_user.status(), StatusCode::UNAUTHORIZED);

    let status: Value = api
        .admin(Method::GET, "/status")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["accounts"][0]["tag"], "main");
    assert_eq!(status["accounts"][0]["state"]["state"], "ready");
    api.server.shutdown().await;
}

#[tokio::test]
async fn the_admin_secret_is_not_a_relay_token() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let response = common::client()
        .post(format!("{}/v1/messages", api.server.url()))
        .bearer_auth(&api.secret)
        .header("anthropic-version", "2023-06-01")
        .json(&common::message_body(false))
        .send()
        .await
        .unwrap();
    // Refused as any unknown token is.
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(setup.mock.messages(), 0);
    api.server.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_and_names_every_route() {
    let setup = Setup::new().await;
    let api = setup.start_managed().await;
    let doc: Value = api
        .admin(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, serde_json::to_value(carpool::api::openapi()).unwrap());
    assert!(doc["paths"]["/api/v1/status"]["get"].is_object(), "{doc}");
    api.server.shutdown().await;
}

/// What the dashboard's generated client relies on: every operation has a unique
/// camelCase id (its function name), a tag (its module), a success response with a
/// schema, and the error shape for its failures.
#[test]
fn every_operation_is_named_tagged_and_typed() {
    let doc = serde_json::to_value(carpool::api::openapi()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with(carpool::api::PREFIX), "{path}");
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no id"));
            assert!(
                id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{at}: operationId {id} is not camelCase"
            );
            assert!(
                ids.insert(id.to_owned()),
                "{at}: operationId {id} used twice"
            );
            assert!(op["tags"][0].is_string(), "{at}: no tag");
            let responses = op["responses"].as_object().unwrap();
            // A success is a 2xx, or the 303 of the one operation that answers a browser
            // window with a redirect (the desktop window's hand-over).
            assert!(
                responses
                    .keys()
                    .any(|status| status.starts_with('2') || status == "303"),
                "{at}: no success response"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{at}: {status} is not the error shape"
                    );
                }
            }
        }
    }
}
