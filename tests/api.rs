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
