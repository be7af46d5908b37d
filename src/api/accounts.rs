//! `/accounts`: list, add (a credentials file, an API key, an OAuth login), change and
//! remove the upstream accounts.
//!
//! The operations themselves ([`add`], [`add_login`], [`update`], [`remove`]) are shared
//! with the command line (`carpool account …`, `carpool login claude`): they take a
//! [`Target`], the running engine's config or a config file, and go through the one
//! write path. Secrets go to the secret store ([`crate::secrets`]) first and the config
//! gets their reference; if the config edit is refused, the stored secret is deleted
//! again, and removing an account deletes its stored secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::write::blocking;
use super::{Api, ApiError, ErrorBody};
use crate::config::accounts::{self as doc_ops, Patch};
use crate::config::edit::{ConfigDoc, EditError};
use crate::config::{Config, Source};
use crate::credentials::login::{AccountOptions, Finished, LoginError, Provider, Started};
use crate::engine::Engine;
use crate::pool::account::Source as AccountSource;
use crate::pool::{AccountKind, AccountStatus};
use crate::secret::Secret;
use crate::secrets::{SecretRef, SecretStore};

/// Where an account operation writes.
pub enum Target<'a> {
    /// The running engine's config file: written, then applied at once.
    Engine(&'a Engine),
    /// A config file with no engine (the command line): written; a running
    /// `carpool serve` applies it by watching the file.
    File(&'a Path),
}

impl Target<'_> {
    /// The config file written.
    fn path(&self) -> Result<PathBuf, EditError> {
        match self {
            Target::Engine(engine) => engine
                .config_file()
                .map(|f| f.path().to_owned())
                .ok_or(EditError::NoFile),
            Target::File(path) => Ok(path.to_path_buf()),
        }
    }

    /// Whether the config would take a login account `tag` with `options`, checked on
    /// the text as it is now without writing anything: a login must not be made only for
    /// the account to be refused after it (say, users who would then need to name their
    /// account).
    pub fn check_login_account(
        &self,
        provider: &Provider,
        tag: &str,
        options: &AccountOptions,
    ) -> Result<(), ApiError> {
        let path = self.path()?;
        let text = std::fs::read_to_string(&path).map_err(|source| {
            EditError::Io(crate::config::ConfigError::Read {
                path: path.clone(),
                source,
            })
        })?;
        let mut doc = ConfigDoc::parse(&text)?;
        let mut entry = Map::new();
        entry.insert("tag".into(), tag.into());
        if let Some(kind) = provider.account_type() {
            entry.insert("type".into(), kind.into());
        }
        entry.insert("login_ref".into(), "file:login-check".into());
        insert_options(&mut entry, options);
        doc_ops::add(&mut doc, entry)?;
        Config::parse(&doc.text(), &path).map_err(EditError::from)?;
        Ok(())
    }

    fn edit<T>(
        &self,
        edit: impl FnOnce(&mut ConfigDoc) -> Result<T, EditError>,
    ) -> Result<T, EditError> {
        match self {
            Target::Engine(engine) => engine.edit_config(edit).map(|e| e.value),
            Target::File(path) => crate::config::file::edit_file(path, edit).map(|(v, _)| v),
        }
    }
}

/// How a new account gets its credentials.
pub enum NewSource {
    /// A Claude Code credentials file on the Carpool machine.
    CredentialPath(PathBuf),
    /// An API key: kept in the secret store.
    ApiKey(Secret),
}

/// Adds an account from a credentials file or an API key. Returns its tag.
pub fn add(
    target: &Target<'_>,
    secrets: &SecretStore,
    tag: &str,
    source: NewSource,
    options: &AccountOptions,
) -> Result<String, ApiError> {
    let mut entry = Map::new();
    entry.insert("tag".into(), tag.into());
    let stored = match source {
        NewSource::CredentialPath(path) => {
            entry.insert("credential_path".into(), path.display().to_string().into());
            None
        }
        NewSource::ApiKey(key) => {
            let key = Secret::new(key.expose().trim());
            if key.is_empty() {
                return Err(ApiError::invalid("api_key: must not be empty"));
            }
            // A taken tag is refused before the key is stored anywhere.
            target.edit(|doc| doc_ops::check_new_tag(doc, tag))?;
            let reference = secrets
                .store_new(tag, &key)
                .map_err(|e| ApiError::unavailable(format!("cannot keep the API key: {e}")))?;
            entry.insert("type".into(), "api_key".into());
            entry.insert("api_key_ref".into(), reference.to_string().into());
            Some(reference)
        }
    };
    insert_options(&mut entry, options);
    commit(target, secrets, entry, stored)
}

/// Adds the account a finished login obtained: its tokens go to the secret store (in the
/// provider's document format), the config gets `login_ref` (and `"type": "codex"` for a
/// Codex login). Returns its tag.
pub fn add_login(
    target: &Target<'_>,
    secrets: &SecretStore,
    finished: Finished,
) -> Result<String, ApiError> {
    target.edit(|doc| doc_ops::check_new_tag(doc, &finished.tag))?;
    let reference = secrets
        .store_new(&finished.tag, &finished.obtained.document())
        .map_err(|e| ApiError::unavailable(format!("cannot keep the login: {e}")))?;
    let mut entry = Map::new();
    entry.insert("tag".into(), finished.tag.clone().into());
    if let Some(kind) = finished.provider.account_type() {
        entry.insert("type".into(), kind.into());
    }
    entry.insert("login_ref".into(), reference.to_string().into());
    if finished.provider.token_url() != finished.provider.default_token_url() {
        entry.insert("token_url".into(), finished.provider.token_url().into());
    }
    insert_options(&mut entry, &finished.options);
    commit(target, secrets, entry, Some(reference))
}

fn insert_options(entry: &mut Map<String, Value>, options: &AccountOptions) {
    if let Some(base_url) = &options.base_url {
        entry.insert("base_url".into(), base_url.clone().into());
    }
    if let Some(proxy) = &options.proxy {
        entry.insert("proxy".into(), proxy.clone().into());
    }
}

/// Writes `entry`; if that is refused, deletes the secret stored for it.
fn commit(
    target: &Target<'_>,
    secrets: &SecretStore,
    entry: Map<String, Value>,
    stored: Option<SecretRef>,
) -> Result<String, ApiError> {
    let tag = entry
        .get("tag")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match target.edit(|doc| doc_ops::add(doc, entry)) {
        Ok(()) => Ok(tag),
        Err(error) => {
            if let Some(reference) = stored
                && let Err(e) = secrets.delete(&reference)
            {
                tracing::warn!(
                    "the account `{tag}` was not added, and its stored secret could not be deleted: {e}"
                );
            }
            Err(error.into())
        }
    }
}

/// Changes an account's reserves, proxy or base URL.
pub fn update(target: &Target<'_>, tag: &str, patch: &Patch) -> Result<(), ApiError> {
    target.edit(|doc| doc_ops::patch(doc, tag, patch))?;
    Ok(())
}

/// Removes an account (refused while users or pools use it) and deletes its stored
/// secret. A secret that cannot be deleted is logged: the account is gone all the same.
pub fn remove(target: &Target<'_>, secrets: &SecretStore, tag: &str) -> Result<(), ApiError> {
    let removed = target.edit(|doc| doc_ops::remove(doc, tag))?;
    for key in ["login_ref", "api_key_ref"] {
        let Some(text) = removed.get(key).and_then(Value::as_str) else {
            continue;
        };
        match SecretRef::parse(text) {
            Ok(reference) => {
                if let Err(e) = secrets.delete(&reference) {
                    tracing::warn!(
                        "account `{tag}` removed, but its secret could not be deleted: {e}"
                    );
                }
            }
            Err(e) => tracing::warn!("account `{tag}` removed; its `{key}` was not valid: {e}"),
        }
    }
    Ok(())
}

/// One account, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    /// Its tag: what users and pools refer to.
    pub tag: String,
    /// Whose API it speaks: `anthropic` (Claude) or `openai` (Codex, GPT models).
    pub provider: crate::config::Provider,
    /// `oauth` (a Claude or Codex login) or `api_key`.
    pub kind: AccountKind,
    /// The upstream API it sends requests to.
    pub base_url: String,
    /// Its outbound proxy, with any password replaced by `***`.
    pub proxy: Option<String>,
    /// Percent of the 5-hour window kept for the owner.
    pub reserve_5h: Option<u32>,
    /// Percent of the weekly window kept for the owner.
    pub reserve_weekly: Option<u32>,
    /// Where its login or key is kept. Never the secret itself.
    pub secret: SecretPlace,
    /// The account's email, when known (logins made through Carpool).
    pub email: Option<String>,
    /// Its plan (`pro`, `max`, …), when known.
    pub plan: Option<String>,
    /// What it is doing now, from the status snapshot (as in `GET /status`).
    pub status: Option<AccountStatus>,
}

/// Where an account's secret is kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretPlace {
    /// `credentials_file` (Claude Code's own file, shared with `claude`), `keyring` (the
    /// OS keyring), `data_dir` (a 0600 file in Carpool's data directory) or
    /// `config_file` (an API key written in the config in clear).
    pub store: SecretStoreKind,
    /// The file's path or the keyring entry, in words.
    pub location: String,
    /// The reference the config holds (`keyring:carpool/<id>`, `file:<id>`), for stored
    /// secrets.
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecretStoreKind {
    CredentialsFile,
    Keyring,
    DataDir,
    ConfigFile,
}

fn secret_place(source: &Source, secrets: &SecretStore, config_path: &str) -> SecretPlace {
    let stored = |reference: &SecretRef| SecretPlace {
        store: match reference {
            SecretRef::Keyring { .. } => SecretStoreKind::Keyring,
            SecretRef::File(_) => SecretStoreKind::DataDir,
        },
        location: reference.describe(secrets),
        reference: Some(reference.to_string()),
    };
    match source {
        Source::OAuthFile { path, keychain, .. } => SecretPlace {
            store: SecretStoreKind::CredentialsFile,
            // On a Mac, Claude Code's Keychain item first (docs/protocol.md §1.3).
            location: match keychain {
                Some(item) => format!("{}, else {}", item.describe(), path.display()),
                None => path.display().to_string(),
            },
            reference: None,
        },
        Source::CodexFile { path, .. } => SecretPlace {
            store: SecretStoreKind::CredentialsFile,
            location: path.display().to_string(),
            reference: None,
        },
        Source::OAuthStored { login, .. } | Source::CodexStored { login, .. } => stored(login),
        Source::ApiKeyStored(reference) => stored(reference),
        Source::ApiKey(_) => SecretPlace {
            store: SecretStoreKind::ConfigFile,
            location: config_path.to_owned(),
            reference: None,
        },
    }
}

/// `http://user:***@host:port` for a proxy URL with a password.
fn mask_proxy(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.as_str().trim_end_matches('/').to_owned()
        }
        _ => url.to_owned(),
    }
}

/// Every account of the running config, with its state.
fn views(api: &Api) -> Vec<Account> {
    let engine = &api.engine;
    let state = engine.state();
    let status = engine.status();
    let config_path = engine
        .config_file()
        .map(|f| f.path().display().to_string())
        .unwrap_or_else(|| "the config".into());
    state
        .config
        .credentials
        .iter()
        .map(|c| {
            let login = state.pool.account(&c.tag).and_then(|a| match &a.source {
                AccountSource::OAuth(credential) => Some(credential.clone()),
                AccountSource::ApiKey(_) => None,
            });
            let (plan, email) = match &login {
                Some(credential) => (credential.plan().0, credential.email()),
                None => (None, None),
            };
            Account {
                tag: c.tag.to_string(),
                provider: c.provider,
                kind: match c.source {
                    Source::OAuthFile { .. }
                    | Source::OAuthStored { .. }
                    | Source::CodexFile { .. }
                    | Source::CodexStored { .. } => AccountKind::OAuth,
                    Source::ApiKey(_) | Source::ApiKeyStored(_) => AccountKind::ApiKey,
                },
                base_url: c.base_url.clone(),
                proxy: c.proxy.as_deref().map(mask_proxy),
                reserve_5h: c.reserve_5h,
                reserve_weekly: c.reserve_weekly,
                secret: secret_place(&c.source, &engine.secrets, &config_path),
                email,
                plan,
                status: status.accounts.iter().find(|s| s.tag == c.tag).cloned(),
            }
        })
        .collect()
}

fn one(api: &Api, tag: &str) -> Result<Account, ApiError> {
    views(api)
        .into_iter()
        .find(|a| a.tag == tag)
        .ok_or_else(|| ApiError::not_found(format!("there is no account `{tag}`")))
}

/// A new account: `credential_path` or `api_key`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddAccount {
    /// Its tag: what users and pools refer to.
    pub tag: String,
    /// A Claude Code credentials file on the Carpool machine (kept where it is, refreshed
    /// in place, shared with `claude`).
    pub credential_path: Option<String>,
    /// An Anthropic API key. Kept in the OS keyring or a 0600 file in Carpool's data
    /// directory; the config gets only a reference to it.
    pub api_key: Option<String>,
    /// The upstream API (default `https://api.anthropic.com`).
    pub base_url: Option<String>,
    /// Outbound proxy for this account: `http://`, `https://`, `socks5://`, `socks5h://`.
    pub proxy: Option<String>,
}

/// Every account, with its state, settings and where its secret is kept.
#[utoipa::path(get, path = "/accounts", tag = "accounts", operation_id = "listAccounts",
    responses((status = 200, body = Vec<Account>), (status = 401, body = ErrorBody)))]
pub async fn list_accounts(State(api): State<Arc<Api>>) -> Json<Vec<Account>> {
    Json(views(&api))
}

/// Adds an account from a credentials file or an API key, and applies it at once.
#[utoipa::path(post, path = "/accounts", tag = "accounts", operation_id = "createAccount",
    request_body = AddAccount,
    responses(
        (status = 201, body = Account, description = "Added; the account as it is now"),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The config file changed on disk since Carpool last read it"),
        (status = 422, body = ErrorBody, description = "A field is wrong (a tag in use, both or neither of credential_path and api_key)"),
        (status = 503, body = ErrorBody, description = "No config file, or no place to keep the key"),
    ))]
pub async fn create_account(
    State(api): State<Arc<Api>>,
    body: Result<Json<AddAccount>, JsonRejection>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let Json(body) = body?;
    let source = match (body.credential_path, body.api_key) {
        (Some(path), None) => NewSource::CredentialPath(PathBuf::from(path)),
        (None, Some(key)) => NewSource::ApiKey(Secret::new(key)),
        _ => {
            return Err(ApiError::invalid(
                "give either `credential_path` (a Claude Code credentials file) or `api_key`; to add a Claude login, use POST /accounts/login",
            ));
        }
    };
    let options = AccountOptions {
        base_url: body.base_url,
        proxy: body.proxy,
    };
    let tag = body.tag;
    let added = blocking(&api, move |engine| {
        add(
            &Target::Engine(engine),
            &engine.secrets,
            &tag,
            source,
            &options,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(one(&api, &added)?)))
}

/// Who a login is with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoginProvider {
    /// A Claude account (Pro, Max, Team, Enterprise).
    #[default]
    Claude,
    /// A ChatGPT account's Codex login (docs/protocol.md §7.3).
    Codex,
}

/// Starts a login that adds an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartLogin {
    /// The new account's tag.
    pub tag: String,
    /// Who to log in with: `claude` (default) or `codex`.
    #[serde(default)]
    pub provider: LoginProvider,
    /// The upstream API (default `https://api.anthropic.com` for Claude,
    /// `https://chatgpt.com/backend-api/codex` for Codex).
    pub base_url: Option<String>,
    /// Outbound proxy for the new account.
    pub proxy: Option<String>,
}

/// A login waiting for its code.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginStarted {
    /// Where the code goes: `POST /accounts/login/{login_id}`.
    pub login_id: String,
    /// The page to open in a browser: log in there, then paste back the code it shows.
    pub authorize_url: String,
    /// Until when (Unix seconds) the login waits for its code.
    pub expires_at: i64,
    /// The tag the account will get.
    pub tag: String,
}

/// The code the login page showed, or the address the browser was sent to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishLogin {
    /// Claude: as shown (`<code>#<state>`). Codex: the whole address the browser was sent
    /// to after logging in (`http://localhost:1455/auth/callback?code=…&state=…`; the page
    /// itself does not load unless a `carpool login codex` listens there).
    pub code: String,
}

/// Starts a login (OAuth with PKCE) with Claude (default) or Codex: open
/// `authorize_url`, log in, and send what it gives back to
/// `POST /accounts/login/{login_id}`: Claude's page shows a code to paste; Codex's login
/// ends on `http://localhost:1455/auth/callback?…`, whose address is pasted.
#[utoipa::path(post, path = "/accounts/login", tag = "accounts", operation_id = "startAccountLogin",
    request_body = StartLogin,
    responses(
        (status = 200, body = LoginStarted),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "The tag is empty or in use"),
        (status = 503, body = ErrorBody),
    ))]
pub async fn start_login(
    State(api): State<Arc<Api>>,
    body: Result<Json<StartLogin>, JsonRejection>,
) -> Result<Json<LoginStarted>, ApiError> {
    let Json(body) = body?;
    let options = AccountOptions {
        base_url: body.base_url,
        proxy: body.proxy,
    };
    let provider = {
        let config = &api.engine.state().config;
        match body.provider {
            LoginProvider::Claude => Provider::Claude(config.claude_login.clone()),
            LoginProvider::Codex => Provider::codex(config.codex_login.clone()),
        }
    };
    let (tag, checked, checked_provider) = (body.tag.clone(), options.clone(), provider.clone());
    blocking(&api, move |engine| {
        Target::Engine(engine).check_login_account(&checked_provider, &tag, &checked)
    })
    .await?;
    let Started {
        login_id,
        authorize_url,
        expires_at,
    } = api.logins.start(provider, &body.tag, options);
    Ok(Json(LoginStarted {
        login_id,
        authorize_url,
        expires_at,
        tag: body.tag,
    }))
}

/// Finishes a login with the code the login page showed: exchanges it, keeps the
/// tokens in the OS keyring (or Carpool's data directory), reads the account's email and
/// plan, and adds the account.
#[utoipa::path(post, path = "/accounts/login/{login_id}", tag = "accounts", operation_id = "finishAccountLogin",
    params(("login_id" = String, Path, description = "From `POST /accounts/login`")),
    request_body = FinishLogin,
    responses(
        (status = 201, body = Account, description = "Logged in and added"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such login waiting (finished or expired)"),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "The code was refused, or belongs to another login"),
        (status = 503, body = ErrorBody, description = "The provider could not be reached"),
    ))]
pub async fn finish_login(
    State(api): State<Arc<Api>>,
    UrlPath(login_id): UrlPath<String>,
    body: Result<Json<FinishLogin>, JsonRejection>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let Json(body) = body?;
    let http = login_client(&api.engine.state().config)?;
    let finished = api
        .logins
        .finish(&login_id, &body.code, &http)
        .await
        .map_err(login_error)?;
    let added = blocking(&api, move |engine| {
        add_login(&Target::Engine(engine), &engine.secrets, finished)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(one(&api, &added)?)))
}

/// The HTTP client logins use: the config's timeouts, no proxy of an account.
pub fn login_client(config: &Config) -> Result<reqwest::Client, ApiError> {
    crate::upstream::client(&config.timeouts, None, &[]).map_err(ApiError::internal)
}

/// A login's failure as an API error with a stable code.
pub fn login_error(error: LoginError) -> ApiError {
    let message = error.to_string();
    match error {
        LoginError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "login_not_found", message),
        LoginError::NoCode => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "login_no_code", message)
        }
        LoginError::StateMismatch => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "login_state_mismatch",
            message,
        ),
        LoginError::CodeRefused(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "login_code_refused",
            message,
        ),
        LoginError::Provider(_) => ApiError::unavailable(message),
    }
}

/// A change of an account's settings. A field left out stays as it is; `null` puts it
/// back to its default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    /// Percent of the 5-hour window kept for the owner (1–99); `null`: none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub reserve_5h: Option<Option<u32>>,
    /// Percent of the weekly window kept for the owner (1–99); `null`: none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub reserve_weekly: Option<Option<u32>>,
    /// Outbound proxy; `null`: none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub proxy: Option<Option<String>>,
    /// The upstream API; `null`: the default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub base_url: Option<Option<String>>,
}

/// A field that is present (`null` included) is `Some`; an absent one stays `None`
/// through `#[serde(default)]`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Changes an account's reserves, proxy or base URL; applied at once.
#[utoipa::path(patch, path = "/accounts/{tag}", tag = "accounts", operation_id = "updateAccount",
    params(("tag" = String, Path, description = "The account's tag")),
    request_body = UpdateAccount,
    responses(
        (status = 200, body = Account, description = "The account as it is now"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn update_account(
    State(api): State<Arc<Api>>,
    UrlPath(tag): UrlPath<String>,
    body: Result<Json<UpdateAccount>, JsonRejection>,
) -> Result<Json<Account>, ApiError> {
    let Json(body) = body?;
    let patch = Patch {
        reserve_5h: body.reserve_5h,
        reserve_weekly: body.reserve_weekly,
        proxy: body.proxy,
        base_url: body.base_url,
    };
    let tag2 = tag.clone();
    blocking(&api, move |engine| {
        update(&Target::Engine(engine), &tag2, &patch)
    })
    .await?;
    Ok(Json(one(&api, &tag)?))
}

/// Removes an account and deletes its stored secret. Refused while users or pools use
/// it (the message names them).
#[utoipa::path(delete, path = "/accounts/{tag}", tag = "accounts", operation_id = "deleteAccount",
    params(("tag" = String, Path, description = "The account's tag")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Still used by users or pools, or the config file changed on disk"),
        (status = 503, body = ErrorBody),
    ))]
pub async fn delete_account(
    State(api): State<Arc<Api>>,
    UrlPath(tag): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    blocking(&api, move |engine| {
        remove(&Target::Engine(engine), &engine.secrets, &tag)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_passwords_are_masked() {
        assert_eq!(
            mask_proxy("http://me:hunter2@proxy.example:3128"),
            "http://me:***@proxy.example:3128"
        );
        assert_eq!(
            mask_proxy("socks5://127.0.0.1:1080"),
            "socks5://127.0.0.1:1080"
        );
    }

    #[test]
    fn a_patch_tells_null_from_absent() {
        let p: UpdateAccount =
            serde_json::from_str(r#"{"reserve_5h": null, "proxy": "socks5://h:1"}"#).unwrap();
        assert_eq!(p.reserve_5h, Some(None));
        assert_eq!(p.reserve_weekly, None);
        assert_eq!(p.proxy, Some(Some("socks5://h:1".into())));
    }
}
