//! The directory (通讯录) on the old API, `oapi.dingtalk.com` (`docs/dingtalk-directory.md` b):
//! wire types for users, departments, parent chains and paged user lists, and (feature
//! `client`, [`DingTalkClient::contacts`](crate::client::DingTalkClient::contacts)) the calls.
//!
//! The calls carry the app's old-API token (`/gettoken`, cached and single-flight like the
//! v1.0 one), answer errors as [`Error::Api`](crate::Error::Api) with the `errcode` as its code
//! (an unknown user or department is [`ErrorKind::NotFound`](crate::ErrorKind::NotFound)), and
//! are paced by the app's QPS budget but not counted toward the org's monthly quota, from which
//! DingTalk exempts the contacts APIs.
//!
//! ```
//! use dingtalk_sdk::contacts::{User, UsersPage};
//! use dingtalk_sdk::DeptId;
//!
//! // `topapi/v2/user/list`'s `result` (TOP-USERLIST field names).
//! let page: UsersPage = serde_json::from_str(r#"{"has_more":true,"next_cursor":10,
//!     "list":[{"userid":"alice","unionid":"u-a","name":"Alice","dept_id_list":[2,4],"active":true}]}"#)?;
//! let alice: &User = &page.list[0];
//! assert_eq!((alice.user_id.as_str(), alice.dept_id_list.as_slice()), ("alice", &[DeptId::new(2), DeptId::new(4)][..]));
//! assert_eq!(page.next(), Some(10));
//! # Ok::<(), serde_json::Error>(())
//! ```

use crate::ids::{DeptId, UnionId, UserId};
use serde::{Deserialize, Serialize};

#[cfg(feature = "client")]
mod api;
#[cfg(feature = "client")]
pub use api::Contacts;

/// `topapi/user/getbyunionid`'s `result`: the organisation's user id of a union id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UnionIdMatch {
    /// `userid`.
    #[serde(rename = "userid")]
    pub user_id: UserId,
    /// `contact_type`: 0 an employee, 1 an external contact.
    #[serde(default)]
    pub contact_type: Option<i64>,
}

/// A user (`topapi/v2/user/get`'s `result`, an item of `topapi/v2/user/list`). Fields this
/// type does not model are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct User {
    /// `userid`: the organisation's id of the user.
    #[serde(rename = "userid")]
    pub user_id: UserId,
    /// `unionid`.
    #[serde(rename = "unionid", default)]
    pub union_id: Option<UnionId>,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// The departments the user is in.
    #[serde(default)]
    pub dept_id_list: Vec<DeptId>,
    /// Whether the user has activated DingTalk.
    #[serde(default)]
    pub active: Option<bool>,
    /// Job title.
    #[serde(default)]
    pub title: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Mobile number.
    #[serde(default)]
    pub mobile: Option<String>,
    /// Employee number.
    #[serde(default)]
    pub job_number: Option<String>,
    /// The user's manager.
    #[serde(rename = "manager_userid", default)]
    pub manager_user_id: Option<UserId>,
    /// Whether the user is an administrator.
    #[serde(default)]
    pub admin: Option<bool>,
}

/// A department (`topapi/v2/department/get`'s `result`, an item of
/// `topapi/v2/department/listsub`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Department {
    /// `dept_id`.
    pub dept_id: DeptId,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// The parent department (absent for the root).
    #[serde(default)]
    pub parent_id: Option<DeptId>,
    /// The order among its siblings (`get` only).
    #[serde(default)]
    pub order: Option<i64>,
}

/// One page of `topapi/v2/user/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UsersPage {
    /// Whether another page follows.
    #[serde(default)]
    pub has_more: bool,
    /// The cursor of the next page.
    #[serde(default)]
    pub next_cursor: Option<i64>,
    /// The department's direct members on this page.
    #[serde(default)]
    pub list: Vec<User>,
}

impl UsersPage {
    /// The cursor of the next page, if there is one.
    pub fn next(&self) -> Option<i64> {
        self.next_cursor.filter(|_| self.has_more)
    }
}

/// Body of `topapi/v2/user/list`: a department's users, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListUsersRequest {
    /// The department.
    pub dept_id: DeptId,
    /// 0 for the first page, then the previous page's `next_cursor`.
    pub cursor: i64,
    /// Page size, at most 100.
    pub size: u32,
    /// `entry_asc`, `entry_desc`, `modify_asc`, `modify_desc` or `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_field: Option<String>,
    /// `zh_CN` (default) or `en_US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

impl ListUsersRequest {
    /// The largest page DingTalk serves.
    pub const MAX_SIZE: u32 = 100;

    /// The first page of `dept_id`'s users, [`MAX_SIZE`](Self::MAX_SIZE) a page.
    pub fn new(dept_id: DeptId) -> Self {
        Self {
            dept_id,
            cursor: 0,
            size: Self::MAX_SIZE,
            order_field: None,
            language: None,
        }
    }

    /// Page size (capped at [`MAX_SIZE`](Self::MAX_SIZE)).
    pub fn size(mut self, size: u32) -> Self {
        self.size = size.min(Self::MAX_SIZE);
        self
    }

    /// Start at this cursor.
    pub fn cursor(mut self, cursor: i64) -> Self {
        self.cursor = cursor;
        self
    }

    /// The order (`order_field`).
    pub fn order_field(mut self, order: impl Into<String>) -> Self {
        self.order_field = Some(order.into());
        self
    }

    /// The directory's language (`zh_CN`, `en_US`).
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_result_shapes_read() {
        // TOP-USERGET (topapi/v2/user/get) sample, trimmed; unknown fields are ignored.
        let user: User = serde_json::from_str(
            r#"{"userid":"manager4220","unionid":"z21HjQliSzpw0Yxxxx","name":"张三","state_code":"86",
                "dept_id_list":[2,3,4],"active":true,"admin":false,"title":"技术总监",
                "leader_in_dept":[{"dept_id":2,"leader":true}],"hired_date":1597573616828}"#,
        )
        .unwrap();
        assert_eq!(
            user.dept_id_list,
            [DeptId::new(2), DeptId::new(3), DeptId::new(4)]
        );
        assert_eq!(user.union_id, Some(UnionId::new("z21HjQliSzpw0Yxxxx")));
        // TOP-DEPTGET (topapi/v2/department/get) sample.
        let dept: Department = serde_json::from_str(
            r#"{"dept_id":100,"name":"HR","parent_id":50,"order":10,"create_dept_group":true,"auto_add_user":false}"#,
        )
        .unwrap();
        assert_eq!(
            (dept.dept_id, dept.parent_id),
            (DeptId::new(100), Some(DeptId::new(50)))
        );
        // DOC-UNIONID (topapi/user/getbyunionid) result.
        let found: UnionIdMatch = serde_json::from_str(r#"{"contact_type":0,"userid":"zhangsan"}"#).unwrap();
        assert_eq!(found.user_id, "zhangsan");
        let last: UsersPage =
            serde_json::from_str(r#"{"has_more":false,"next_cursor":20,"list":[]}"#).unwrap();
        assert_eq!(last.next(), None);
        assert_eq!(ListUsersRequest::new(DeptId::ROOT).size(500).size, 100);
    }
}
