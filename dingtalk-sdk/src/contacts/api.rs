//! The directory calls, on [`DingTalkClient::contacts`](crate::client::DingTalkClient::contacts).

use super::{Department, ListUsersRequest, UnionIdMatch, User, UsersPage};
use crate::budget::Metering;
use crate::client::{DingTalkClient, Host, Op};
use crate::error::Result;
use crate::ids::{DeptId, UnionId, UserId};
use futures_util::Stream;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// An old-API answer's `result`.
#[derive(Deserialize)]
struct Envelope<T> {
    result: T,
}

#[derive(Deserialize)]
struct DeptParents {
    parent_id_list: Vec<DeptId>,
}

#[derive(Deserialize)]
struct UserParents {
    parent_list: Vec<ParentChain>,
}

#[derive(Deserialize)]
struct ParentChain {
    parent_dept_id_list: Vec<DeptId>,
}

/// The directory of one client (old API). Every call is a read: retried after server errors,
/// timeouts and rate limits.
///
/// ```no_run
/// use dingtalk_sdk::client::DingTalkClient;
/// use dingtalk_sdk::contacts::ListUsersRequest;
/// use dingtalk_sdk::token::Credentials;
/// use dingtalk_sdk::DeptId;
/// use futures_util::TryStreamExt as _;
///
/// # async fn run() -> dingtalk_sdk::Result<()> {
/// let client = DingTalkClient::builder(Credentials::new("dingappkey", "app-secret")).build()?;
/// for dept in client.contacts().sub_departments(DeptId::ROOT).await? {
///     let users: Vec<_> = client.contacts().users(ListUsersRequest::new(dept.dept_id)).try_collect().await?;
///     println!("{}: {} users", dept.name, users.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Contacts<'a> {
    client: &'a DingTalkClient,
}

impl<'a> Contacts<'a> {
    pub(crate) fn new(client: &'a DingTalkClient) -> Self {
        Self { client }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        name: &'static str,
        path: &'static str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T> {
        let op = Op {
            name,
            method: Method::POST,
            host: Host::Oapi,
            path,
            // Reads, although they are POSTs.
            idempotent: true,
            metering: Metering::QpsOnly,
        };
        let answer: Envelope<T> = self.client.send(op, &[], Some(body)).await?;
        Ok(answer.result)
    }

    /// The organisation's user id of a union id (`topapi/user/getbyunionid`), e.g. the
    /// signed-in user's ([`OAuth::me`](crate::oauth::OAuth::me)).
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) `60121` ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound))
    /// when no user of the app's organisation has that union id (a user of another
    /// organisation, or one who left); transport and decode errors.
    pub async fn user_id_by_union_id(&self, union_id: &UnionId) -> Result<UnionIdMatch> {
        let body = serde_json::json!({ "unionid": union_id });
        self.call("GetUserIdByUnionId", "/topapi/user/getbyunionid", &body)
            .await
    }

    /// A user (`topapi/v2/user/get`), with the departments they are in.
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) `60121` ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound))
    /// for an unknown user; transport and decode errors.
    pub async fn user(&self, user_id: &UserId) -> Result<User> {
        let body = serde_json::json!({ "userid": user_id });
        self.call("GetUser", "/topapi/v2/user/get", &body).await
    }

    /// The departments directly under `dept_id` (`topapi/v2/department/listsub`; the root is
    /// [`DeptId::ROOT`]).
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) `60003` ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound))
    /// for an unknown department; transport and decode errors.
    pub async fn sub_departments(&self, dept_id: DeptId) -> Result<Vec<Department>> {
        let body = serde_json::json!({ "dept_id": dept_id });
        self.call("ListSubDepartments", "/topapi/v2/department/listsub", &body)
            .await
    }

    /// A department (`topapi/v2/department/get`).
    ///
    /// # Errors
    /// As [`sub_departments`](Self::sub_departments).
    pub async fn department(&self, dept_id: DeptId) -> Result<Department> {
        let body = serde_json::json!({ "dept_id": dept_id });
        self.call("GetDepartment", "/topapi/v2/department/get", &body)
            .await
    }

    /// A department's chain up to the root (`topapi/v2/department/listparentbydept`): the
    /// department itself first, [`DeptId::ROOT`] last.
    ///
    /// # Errors
    /// As [`sub_departments`](Self::sub_departments).
    pub async fn department_parents(&self, dept_id: DeptId) -> Result<Vec<DeptId>> {
        let body = serde_json::json!({ "dept_id": dept_id });
        let parents: DeptParents = self
            .call(
                "ListParentsByDept",
                "/topapi/v2/department/listparentbydept",
                &body,
            )
            .await?;
        Ok(parents.parent_id_list)
    }

    /// A user's department chains (`topapi/v2/department/listparentbyuser`): one per
    /// department the user is in, that department first and the root last.
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) `33012` ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound))
    /// for an unknown user; transport and decode errors.
    pub async fn user_parent_departments(&self, user_id: &UserId) -> Result<Vec<Vec<DeptId>>> {
        let body = serde_json::json!({ "userid": user_id });
        let parents: UserParents = self
            .call(
                "ListParentsByUser",
                "/topapi/v2/department/listparentbyuser",
                &body,
            )
            .await?;
        Ok(parents
            .parent_list
            .into_iter()
            .map(|c| c.parent_dept_id_list)
            .collect())
    }

    /// One page of a department's direct members (`topapi/v2/user/list`).
    ///
    /// # Errors
    /// As [`sub_departments`](Self::sub_departments).
    pub async fn users_page(&self, request: &ListUsersRequest) -> Result<UsersPage> {
        self.call("ListDepartmentUsers", "/topapi/v2/user/list", request)
            .await
    }

    /// Every direct member of a department, page after page, as a stream. It ends after a
    /// page without more, or when a cursor repeats (a guard against a server paging forever).
    pub fn users(&self, request: ListUsersRequest) -> impl Stream<Item = Result<User>> + Send + 'a {
        let contacts = *self;
        let pages =
            futures_util::stream::unfold(Some((request, Vec::<i64>::new())), move |state| async move {
                let (mut request, mut seen) = state?;
                match contacts.users_page(&request).await {
                    Ok(page) => {
                        let next = page.next().filter(|c| *c != request.cursor && !seen.contains(c));
                        let state = next.map(|cursor| {
                            seen.push(request.cursor);
                            request.cursor = cursor;
                            (request, seen)
                        });
                        let items: Vec<Result<User>> = page.list.into_iter().map(Ok).collect();
                        Some((futures_util::stream::iter(items), state))
                    }
                    Err(e) => Some((futures_util::stream::iter(vec![Err(e)]), None)),
                }
            });
        futures_util::StreamExt::flatten(pages)
    }
}
