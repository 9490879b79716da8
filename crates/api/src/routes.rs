//! The JSON API under `/api/`. Each handler names the scope it needs by its first
//! extractor; acting on a thread (approve, reject, run, cancel, restore, rate) also needs
//! the thread to be the caller's, unless the caller is an admin.

use crate::auth::{Admin, Operator, Viewer};
use crate::error::{Error, ErrorBody, Result};
use crate::model::{
    Approval, CreatedToken, Identity, KnowledgeHit, KnowledgeQuery, MessageView, Namespaces,
    NewMessage, NewThread, NewToken, PlanView, PolicyView, Rating, Rejection, RestoreView, Scope,
    StepPreview, ThreadDetail, ThreadQuery, ThreadSummary, TokenRecord, ToolView, WhoAmI,
    MAX_TEXT_BYTES,
};
use crate::ApiState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use deckhand_runtime::{PlanId, ThreadId};
use serde::de::DeserializeOwned;

/// Default and largest page of `GET /api/threads`.
const DEFAULT_THREAD_LIMIT: u32 = 50;
const MAX_THREAD_LIMIT: u32 = 500;
/// Default and largest page of `GET /api/knowledge`.
const DEFAULT_KNOWLEDGE_LIMIT: u32 = 10;
const MAX_KNOWLEDGE_LIMIT: u32 = 100;

/// The `/api/` routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/whoami", get(whoami))
        .route("/api/threads", get(list_threads).post(create_thread))
        .route("/api/threads/{id}", get(show_thread))
        .route("/api/threads/{id}/messages", post(post_message))
        .route("/api/threads/{id}/plans/{plan}/preview", get(preview))
        .route("/api/threads/{id}/plans/{plan}/approve", post(approve))
        .route("/api/threads/{id}/plans/{plan}/reject", post(reject))
        .route("/api/threads/{id}/plans/{plan}/run", post(run))
        .route("/api/threads/{id}/plans/{plan}/cancel", post(cancel))
        .route("/api/threads/{id}/planning/cancel", post(cancel_planning))
        .route("/api/threads/{id}/restore", post(restore))
        .route("/api/threads/{id}/rating", post(rate))
        .route("/api/knowledge", get(search_knowledge))
        .route("/api/tools", get(tools))
        .route("/api/policies", get(policies))
        .route("/api/namespaces", get(namespaces))
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{id}", delete(revoke_token))
}

/// A JSON body whose problems are answered as JSON errors (400, 413), not plain text.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::PayloadTooLarge {
            message: rejection.body_text(),
        };
    }
    Error::invalid(rejection.body_text())
}

/// A query string whose problems are answered as JSON errors.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| Error::invalid(rejection.body_text()))
    }
}

fn thread_id(text: &str) -> Result<ThreadId> {
    text.parse()
        .map_err(|_| Error::invalid(format!("{text:?} is not a thread id (a UUID)")))
}

fn plan_id(text: &str) -> Result<PlanId> {
    text.parse()
        .map_err(|_| Error::invalid(format!("{text:?} is not a plan id (a UUID)")))
}

fn check_text(what: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::invalid(format!(
            "{what} is {} bytes; at most {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

/// Operators act only on their own threads; admins on every one.
pub(crate) async fn check_owner(state: &ApiState, who: &Identity, thread: ThreadId) -> Result<()> {
    if who.scope == Scope::Admin {
        return Ok(());
    }
    let detail = state.service().thread(who, thread).await?;
    if who.may_act_on(&detail.thread.user) {
        Ok(())
    } else {
        Err(Error::Forbidden {
            reason: format!(
                "thread {thread} belongs to {}; operators act on their own threads",
                detail.thread.user
            ),
        })
    }
}

/// The caller's identity and scope.
#[utoipa::path(get, path = "/api/whoami", tag = "auth",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn whoami(Viewer(who): Viewer) -> Json<WhoAmI> {
    Json(WhoAmI { identity: who })
}

/// Threads, newest first.
#[utoipa::path(get, path = "/api/threads", tag = "threads", params(ThreadQuery),
    responses((status = 200, body = [ThreadSummary]), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_threads(
    Viewer(who): Viewer,
    State(state): State<ApiState>,
    Params(mut query): Params<ThreadQuery>,
) -> Result<Json<Vec<ThreadSummary>>> {
    query.limit = Some(
        query
            .limit
            .unwrap_or(DEFAULT_THREAD_LIMIT)
            .clamp(1, MAX_THREAD_LIMIT),
    );
    if let Some(status) = &query.status {
        if status != "open" && status != "closed" {
            return Err(Error::invalid(format!(
                "status {status:?}: expected open or closed"
            )));
        }
    }
    Ok(Json(state.service().list_threads(&who, query).await?))
}

/// Starts a thread with a request.
#[utoipa::path(post, path = "/api/threads", tag = "threads", request_body = NewThread,
    responses((status = 201, body = ThreadDetail), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_thread(
    Operator(who): Operator,
    State(state): State<ApiState>,
    Body(request): Body<NewThread>,
) -> Result<(StatusCode, Json<ThreadDetail>)> {
    check_text("text", &request.text)?;
    let detail = state.service().create_thread(&who, request).await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

/// One thread with its messages, plans and steps.
#[utoipa::path(get, path = "/api/threads/{id}", tag = "threads",
    params(("id" = String, Path, description = "thread id")),
    responses((status = 200, body = ThreadDetail), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show_thread(
    Viewer(who): Viewer,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ThreadDetail>> {
    Ok(Json(state.service().thread(&who, thread_id(&id)?).await?))
}

/// Adds a message to a thread.
#[utoipa::path(post, path = "/api/threads/{id}/messages", tag = "threads",
    params(("id" = String, Path, description = "thread id")), request_body = NewMessage,
    responses((status = 201, body = MessageView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_message(
    Operator(who): Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(message): Body<NewMessage>,
) -> Result<(StatusCode, Json<MessageView>)> {
    check_text("text", &message.text)?;
    let message = state
        .service()
        .post_message(&who, thread_id(&id)?, message)
        .await?;
    Ok((StatusCode::CREATED, Json(message)))
}

/// What each changing step of a plan would apply: manifest, diff against the live
/// object, policy denials. Read-only, so viewers may look.
#[utoipa::path(get, path = "/api/threads/{id}/plans/{plan}/preview", tag = "plans",
    params(("id" = String, Path, description = "thread id"), ("plan" = String, Path, description = "plan id")),
    responses((status = 200, body = [StepPreview]), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "this service cannot preview")),
    security(("bearer" = [])))]
pub async fn preview(
    Viewer(who): Viewer,
    State(state): State<ApiState>,
    Path((id, plan)): Path<(String, String)>,
) -> Result<Json<Vec<StepPreview>>> {
    let (thread, plan) = (thread_id(&id)?, plan_id(&plan)?);
    Ok(Json(state.service().preview(&who, thread, plan).await?))
}

/// Approves a plan (or one step) by its hash.
#[utoipa::path(post, path = "/api/threads/{id}/plans/{plan}/approve", tag = "plans",
    params(("id" = String, Path, description = "thread id"), ("plan" = String, Path, description = "plan id")),
    request_body = Approval,
    responses((status = 200, body = PlanView), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the hash does not name this plan")),
    security(("bearer" = [])))]
pub async fn approve(
    Operator(who): Operator,
    State(state): State<ApiState>,
    Path((id, plan)): Path<(String, String)>,
    Body(approval): Body<Approval>,
) -> Result<Json<PlanView>> {
    let (thread, plan) = (thread_id(&id)?, plan_id(&plan)?);
    check_owner(&state, &who, thread).await?;
    let target = if approval.step.is_some() {
        "step"
    } else {
        "plan"
    };
    let view = state
        .service()
        .approve(&who, thread, plan, approval)
        .await?;
    state.metrics().approval("approved", target);
    Ok(Json(view))
}

/// Rejects a plan (or one step).
#[utoipa::path(post, path = "/api/threads/{id}/plans/{plan}/reject", tag = "plans",
    params(("id" = String, Path, description = "thread id"), ("plan" = String, Path, description = "plan id")),
    request_body = Rejection,
    responses((status = 200, body = PlanView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reject(
    Operator(who): Operator,
    State(state): State<ApiState>,
    Path((id, plan)): Path<(String, String)>,
    Body(rejection): Body<Rejection>,
) -> Result<Json<PlanView>> {
    let (thread, plan) = (thread_id(&id)?, plan_id(&plan)?);
    check_owner(&state, &who, thread).await?;
    let target = if rejection.step.is_some() {
        "step"
    } else {
        "plan"
    };
    let view = state
        .service()
        .reject(&who, thread, plan, rejection)
        .await?;
    state.metrics().approval("rejected", target);
    Ok(Json(view))
}

/// Starts running a plan.
#[utoipa::path(post, path = "/api/threads/{id}/plans/{plan}/run", tag = "plans",
    params(("id" = String, Path, description = "thread id"), ("plan" = String, Path, description = "plan id")),
    responses((status = 202, body = PlanView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn run(
    Operator(who): Operator,
    State(state): State<ApiState>,
    Path((id, plan)): Path<(String, String)>,
) -> Result<(StatusCode, Json<PlanView>)> {
    let (thread, plan) = (thread_id(&id)?, plan_id(&plan)?);
    check_owner(&state, &who, thread).await?;
    let view = state.service().run(&who, thread, plan).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Cancels a running plan.
#[utoipa::path(post, path = "/api/threads/{id}/plans/{plan}/cancel", tag = "plans",
    params(("id" = String, Path, description = "thread id"), ("plan" = String, Path, description = "plan id")),
    responses((status = 200, body = PlanView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    Operator(who): Operator,
    State(state): State<ApiState>,
    Path((id, plan)): Path<(String, String)>,
) -> Result<Json<PlanView>> {
    let (thread, plan) = (thread_id(&id)?, plan_id(&plan)?);
    check_owner(&state, &who, thread).await?;
    Ok(Json(state.service().cancel(&who, thread, plan).await?))
}

/// Stops the planning going on in a thread: no plan comes of it.
#[utoipa::path(post, path = "/api/threads/{id}/planning/cancel", tag = "threads",
    params(("id" = String, Path, description = "thread id")),
    responses((status = 204, description = "planning stopped"), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "nothing is being planned")),
    security(("bearer" = [])))]
pub async fn cancel_planning(
    Operator(who): Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let thread = thread_id(&id)?;
    check_owner(&state, &who, thread).await?;
    state.service().cancel_planning(&who, thread).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Returns what the thread changed to its state before.
#[utoipa::path(post, path = "/api/threads/{id}/restore", tag = "threads",
    params(("id" = String, Path, description = "thread id")),
    responses((status = 200, body = RestoreView), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn restore(
    Operator(who): Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<RestoreView>> {
    let thread = thread_id(&id)?;
    check_owner(&state, &who, thread).await?;
    match state.service().restore(&who, thread).await {
        Ok(view) => {
            state.metrics().restore(if view.failed.is_empty() {
                "ok"
            } else {
                "partial"
            });
            Ok(Json(view))
        }
        Err(error) => {
            state.metrics().restore("error");
            Err(error)
        }
    }
}

/// Rates a thread 0-100 (100 closes it).
#[utoipa::path(post, path = "/api/threads/{id}/rating", tag = "threads",
    params(("id" = String, Path, description = "thread id")), request_body = Rating,
    responses((status = 200, body = ThreadSummary), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rate(
    Operator(who): Operator,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(rating): Body<Rating>,
) -> Result<Json<ThreadSummary>> {
    if rating.rating > 100 {
        return Err(Error::invalid(format!(
            "rating {} is above 100",
            rating.rating
        )));
    }
    let thread = thread_id(&id)?;
    check_owner(&state, &who, thread).await?;
    Ok(Json(state.service().rate(&who, thread, rating).await?))
}

/// Searches past threads.
#[utoipa::path(get, path = "/api/knowledge", tag = "knowledge", params(KnowledgeQuery),
    responses((status = 200, body = [KnowledgeHit]), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search_knowledge(
    Viewer(who): Viewer,
    State(state): State<ApiState>,
    Params(mut query): Params<KnowledgeQuery>,
) -> Result<Json<Vec<KnowledgeHit>>> {
    check_text("q", &query.q)?;
    query.limit = Some(
        query
            .limit
            .unwrap_or(DEFAULT_KNOWLEDGE_LIMIT)
            .clamp(1, MAX_KNOWLEDGE_LIMIT),
    );
    Ok(Json(state.service().search_knowledge(&who, query).await?))
}

/// The tools agents may use.
#[utoipa::path(get, path = "/api/tools", tag = "catalog",
    responses((status = 200, body = [ToolView])), security(("bearer" = [])))]
pub async fn tools(
    Viewer(who): Viewer,
    State(state): State<ApiState>,
) -> Result<Json<Vec<ToolView>>> {
    Ok(Json(state.service().tools(&who).await?))
}

/// The policies operations are judged by.
#[utoipa::path(get, path = "/api/policies", tag = "catalog",
    responses((status = 200, body = [PolicyView])), security(("bearer" = [])))]
pub async fn policies(
    Viewer(who): Viewer,
    State(state): State<ApiState>,
) -> Result<Json<Vec<PolicyView>>> {
    Ok(Json(state.service().policies(&who).await?))
}

/// The namespaces the caller may work in.
#[utoipa::path(get, path = "/api/namespaces", tag = "catalog",
    responses((status = 200, body = Namespaces), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn namespaces(
    Viewer(who): Viewer,
    State(state): State<ApiState>,
) -> Result<Json<Namespaces>> {
    let mut namespaces = state.service().namespaces(&who).await?;
    namespaces.sort();
    Ok(Json(Namespaces { namespaces }))
}

/// Every API token (admin).
#[utoipa::path(get, path = "/api/tokens", tag = "auth",
    responses((status = 200, body = [TokenRecord]), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tokens(
    Admin(_who): Admin,
    State(state): State<ApiState>,
) -> Result<Json<Vec<TokenRecord>>> {
    Ok(Json(state.tokens().list().await?))
}

/// Makes an API token (admin); the token is shown only in this answer.
#[utoipa::path(post, path = "/api/tokens", tag = "auth", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_token(
    Admin(who): Admin,
    State(state): State<ApiState>,
    Body(request): Body<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    let created = crate::auth::issue_token(state.tokens().as_ref(), request, &who.subject).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes an API token (admin).
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    Admin(_who): Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let uuid = uuid::Uuid::parse_str(&id)
        .map_err(|_| Error::invalid(format!("{id:?} is not a token id (a UUID)")))?;
    if state.tokens().revoke(uuid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound { what: "token", id })
    }
}
