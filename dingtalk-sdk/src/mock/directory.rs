//! The mock's directory: departments and users of each organisation (corp), what sign-in and
//! the contacts endpoints read, and the changes the control API makes to it, each with the
//! contact-change event DingTalk would push.

use super::config::DEFAULT_CORP_ID;
use super::control::Refused;
use super::state::EventDraft;
use crate::event::{DeptChangeType, UserChangeType};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A second organisation of the default directory, whose users can sign in to an app of the
/// mock's organisation ([`DEFAULT_CORP_ID`]) but are not in its directory.
pub const OTHER_CORP_ID: &str = "dingothercorp000000000";

fn default_corp_id() -> String {
    DEFAULT_CORP_ID.to_owned()
}

fn yes() -> bool {
    true
}

/// A department. Each corp has a root department, id 1, without a parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MockDepartment {
    /// `dept_id`.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The parent department (`None` for the root).
    #[serde(default)]
    pub parent: Option<i64>,
    /// The organisation (default: the mock's, `dingmockcorp0000000000`).
    #[serde(default = "default_corp_id")]
    pub corp_id: String,
}

impl MockDepartment {
    /// A department of the mock's organisation under `parent`.
    pub fn new(id: i64, name: impl Into<String>, parent: Option<i64>) -> Self {
        Self {
            id,
            name: name.into(),
            parent,
            corp_id: default_corp_id(),
        }
    }

    /// In another organisation.
    pub fn corp_id(mut self, corp_id: impl Into<String>) -> Self {
        self.corp_id = corp_id.into();
        self
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MockUser {
    /// `userid` in the organisation.
    pub user_id: String,
    /// `unionId`; default `union-<user_id>`.
    #[serde(default)]
    pub union_id: Option<String>,
    /// Name (also the DingTalk nickname).
    pub name: String,
    /// The departments the user is in.
    pub dept_ids: Vec<i64>,
    /// The organisation (default: the mock's).
    #[serde(default = "default_corp_id")]
    pub corp_id: String,
    /// Mobile number.
    #[serde(default)]
    pub mobile: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the user has activated DingTalk (default true).
    #[serde(default = "yes")]
    pub active: bool,
}

impl MockUser {
    /// A user of the mock's organisation in these departments.
    pub fn new(user_id: impl Into<String>, name: impl Into<String>, dept_ids: Vec<i64>) -> Self {
        Self {
            user_id: user_id.into(),
            union_id: None,
            name: name.into(),
            dept_ids,
            corp_id: default_corp_id(),
            mobile: None,
            email: None,
            active: true,
        }
    }

    /// In another organisation.
    pub fn corp_id(mut self, corp_id: impl Into<String>) -> Self {
        self.corp_id = corp_id.into();
        self
    }

    /// A chosen union id.
    pub fn union_id(mut self, union_id: impl Into<String>) -> Self {
        self.union_id = Some(union_id.into());
        self
    }

    /// The union id: the chosen one or `union-<user_id>`.
    pub fn effective_union_id(&self) -> String {
        self.union_id
            .clone()
            .unwrap_or_else(|| format!("union-{}", self.user_id))
    }

    /// `users/me`'s answer.
    pub(crate) fn profile_json(&self) -> Value {
        let mut me = json!({"nick": self.name, "unionId": self.effective_union_id(),
                            "openId": format!("open-{}", self.user_id), "stateCode": "86", "visitor": false});
        if let Some(obj) = me.as_object_mut() {
            if let Some(mobile) = &self.mobile {
                obj.insert("mobile".into(), json!(mobile));
            }
            if let Some(email) = &self.email {
                obj.insert("email".into(), json!(email));
            }
        }
        me
    }

    /// `topapi/v2/user/get`'s `result` (and an item of `topapi/v2/user/list`).
    pub(crate) fn to_json(&self) -> Value {
        let mut user = json!({"userid": self.user_id, "unionid": self.effective_union_id(), "name": self.name,
                              "dept_id_list": self.dept_ids, "active": self.active, "admin": false,
                              "boss": false, "state_code": "86"});
        if let Some(obj) = user.as_object_mut() {
            if let Some(mobile) = &self.mobile {
                obj.insert("mobile".into(), json!(mobile));
            }
            if let Some(email) = &self.email {
                obj.insert("email".into(), json!(email));
            }
        }
        user
    }
}

/// The mock's directory: every organisation's departments and users, set with
/// [`MockDingTalkBuilder::directory`](super::MockDingTalkBuilder::directory) or `[directory]`
/// in the binary's configuration.
///
/// [`Default`] is a small company, `dingmockcorp0000000000`: departments 1 "Company", 2
/// "Engineering" and 3 "Security" under it, 4 "Platform" under Engineering; users `alice`
/// (Platform), `bob` and `manager4321` (Engineering), `approver1`, `approver2`,
/// `approver0001` and `security-lead` (Security). And another organisation,
/// [`OTHER_CORP_ID`], with its root 1 "Other Co" and one user, `mallory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MockDirectory {
    /// Departments (each corp needs its root, id 1).
    pub departments: Vec<MockDepartment>,
    /// Users.
    pub users: Vec<MockUser>,
}

impl Default for MockDirectory {
    fn default() -> Self {
        let dept = MockDepartment::new;
        let user = |id: &str, name: &str, dept: i64| MockUser::new(id, name, vec![dept]);
        Self {
            departments: vec![
                dept(1, "Company", None),
                dept(2, "Engineering", Some(1)),
                dept(3, "Security", Some(1)),
                dept(4, "Platform", Some(2)),
                dept(1, "Other Co", None).corp_id(OTHER_CORP_ID),
            ],
            users: vec![
                user("alice", "Alice", 4),
                user("bob", "Bob", 2),
                user("manager4321", "Manager", 2),
                user("approver1", "Approver One", 3),
                user("approver2", "Approver Two", 3),
                user("approver0001", "Approver 0001", 3),
                user("security-lead", "Security Lead", 3),
                user("mallory", "Mallory", 1).corp_id(OTHER_CORP_ID),
            ],
        }
    }
}

fn invalid(message: String) -> Refused {
    ("invalidParameter".to_owned(), message)
}

/// A change to the directory (control API), with its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    AddUser(MockUser),
    MoveUser {
        corp_id: String,
        user_id: String,
        dept_ids: Vec<i64>,
    },
    RemoveUser {
        corp_id: String,
        user_id: String,
    },
    AddDepartment(MockDepartment),
    RenameDepartment {
        corp_id: String,
        id: i64,
        name: String,
    },
    RemoveDepartment {
        corp_id: String,
        id: i64,
    },
}

/// What a change touched: the corp and the event's type and ids.
pub(crate) enum Touched {
    Users(String, UserChangeType, String),
    Departments(String, DeptChangeType, i64),
}

impl MockDirectory {
    pub(crate) fn department(&self, corp_id: &str, id: i64) -> Option<&MockDepartment> {
        self.departments
            .iter()
            .find(|d| d.corp_id == corp_id && d.id == id)
    }

    pub(crate) fn user(&self, corp_id: &str, user_id: &str) -> Option<&MockUser> {
        self.users
            .iter()
            .find(|u| u.corp_id == corp_id && u.user_id == user_id)
    }

    /// The departments directly under `id`.
    pub(crate) fn children(&self, corp_id: &str, id: i64) -> impl Iterator<Item = &MockDepartment> {
        let corp_id = corp_id.to_owned();
        self.departments
            .iter()
            .filter(move |d| d.corp_id == corp_id && d.parent == Some(id))
    }

    /// `id` and its ancestors, root last (the chain stops at a cycle or a missing parent).
    pub(crate) fn chain(&self, corp_id: &str, id: i64) -> Vec<i64> {
        let mut chain = Vec::new();
        let mut next = Some(id);
        while let Some(id) = next.filter(|id| !chain.contains(id)) {
            let Some(dept) = self.department(corp_id, id) else {
                break;
            };
            chain.push(id);
            next = dept.parent;
        }
        chain
    }

    /// Every corp's root, parent and membership is consistent.
    pub(crate) fn validate(&self) -> Result<(), Refused> {
        for (i, d) in self.departments.iter().enumerate() {
            let duplicate = self
                .departments
                .iter()
                .skip(i + 1)
                .any(|o| o.corp_id == d.corp_id && o.id == d.id);
            if duplicate {
                return Err(invalid(format!(
                    "department {} of {} is listed twice",
                    d.id, d.corp_id
                )));
            }
            match d.parent {
                None if d.id != 1 => {
                    return Err(invalid(format!(
                        "department {} of {} has no parent (only the root, 1, may)",
                        d.id, d.corp_id
                    )))
                }
                Some(parent) if self.department(&d.corp_id, parent).is_none() => {
                    return Err(invalid(format!(
                        "department {} of {}: parent {parent} does not exist",
                        d.id, d.corp_id
                    )))
                }
                _ => {}
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            let duplicate = self
                .users
                .iter()
                .skip(i + 1)
                .any(|o| o.corp_id == u.corp_id && o.user_id == u.user_id);
            if duplicate {
                return Err(invalid(format!(
                    "user {} of {} is listed twice",
                    u.user_id, u.corp_id
                )));
            }
            self.check_departments(&u.corp_id, &u.dept_ids)?;
        }
        Ok(())
    }

    fn check_departments(&self, corp_id: &str, dept_ids: &[i64]) -> Result<(), Refused> {
        if dept_ids.is_empty() {
            return Err(invalid("a user needs at least one department".to_owned()));
        }
        match dept_ids
            .iter()
            .find(|id| self.department(corp_id, **id).is_none())
        {
            Some(id) => Err(invalid(format!("department {id} of {corp_id} does not exist"))),
            None => Ok(()),
        }
    }

    /// Applies a change, or refuses it (leaving the directory as it was).
    pub(crate) fn apply(&mut self, change: Change) -> Result<Touched, Refused> {
        match change {
            Change::AddUser(user) => {
                if self.user(&user.corp_id, &user.user_id).is_some() {
                    return Err(invalid(format!("user {} already exists", user.user_id)));
                }
                self.check_departments(&user.corp_id, &user.dept_ids)?;
                let touched = Touched::Users(user.corp_id.clone(), UserChangeType::Add, user.user_id.clone());
                self.users.push(user);
                Ok(touched)
            }
            Change::MoveUser {
                corp_id,
                user_id,
                dept_ids,
            } => {
                self.check_departments(&corp_id, &dept_ids)?;
                let user = self
                    .users
                    .iter_mut()
                    .find(|u| u.corp_id == corp_id && u.user_id == user_id)
                    .ok_or_else(|| invalid(format!("user {user_id} does not exist")))?;
                user.dept_ids = dept_ids;
                Ok(Touched::Users(corp_id, UserChangeType::Modify, user_id))
            }
            Change::RemoveUser { corp_id, user_id } => {
                let before = self.users.len();
                self.users
                    .retain(|u| u.corp_id != corp_id || u.user_id != user_id);
                if self.users.len() == before {
                    return Err(invalid(format!("user {user_id} does not exist")));
                }
                Ok(Touched::Users(corp_id, UserChangeType::Leave, user_id))
            }
            Change::AddDepartment(dept) => {
                if self.department(&dept.corp_id, dept.id).is_some() {
                    return Err(invalid(format!("department {} already exists", dept.id)));
                }
                match dept.parent {
                    Some(parent) if self.department(&dept.corp_id, parent).is_some() => {}
                    _ => return Err(invalid(format!("department {}: the parent must exist", dept.id))),
                }
                let touched = Touched::Departments(dept.corp_id.clone(), DeptChangeType::Create, dept.id);
                self.departments.push(dept);
                Ok(touched)
            }
            Change::RenameDepartment { corp_id, id, name } => {
                let dept = self
                    .departments
                    .iter_mut()
                    .find(|d| d.corp_id == corp_id && d.id == id)
                    .ok_or_else(|| invalid(format!("department {id} does not exist")))?;
                dept.name = name;
                Ok(Touched::Departments(corp_id, DeptChangeType::Modify, id))
            }
            Change::RemoveDepartment { corp_id, id } => {
                if self.department(&corp_id, id).is_none() {
                    return Err(invalid(format!("department {id} does not exist")));
                }
                let occupied = self.children(&corp_id, id).next().is_some()
                    || self
                        .users
                        .iter()
                        .any(|u| u.corp_id == corp_id && u.dept_ids.contains(&id));
                if id == 1 || occupied {
                    return Err(invalid(format!("department {id} is the root or not empty")));
                }
                self.departments.retain(|d| d.corp_id != corp_id || d.id != id);
                Ok(Touched::Departments(corp_id, DeptChangeType::Remove, id))
            }
        }
    }
}

impl Touched {
    /// The corp whose apps hear of the change.
    pub(crate) fn corp_id(&self) -> &str {
        match self {
            Touched::Users(corp, ..) | Touched::Departments(corp, ..) => corp,
        }
    }

    /// The event for one app, shaped as the current documented format
    /// (`docs/dingtalk-directory.md` c): `timeStamp` and `userId` for users, `deptId` for
    /// departments.
    pub(crate) fn draft(&self, client_id: &str, now_ms: i64) -> EventDraft {
        let mut fields = Map::new();
        let event_type = match self {
            Touched::Users(_, change, user_id) => {
                fields.insert("timeStamp".into(), json!(now_ms.to_string()));
                fields.insert("userId".into(), json!([user_id]));
                change.event_type()
            }
            Touched::Departments(_, change, id) => {
                fields.insert("deptId".into(), json!([id]));
                change.event_type()
            }
        };
        EventDraft {
            client_id: client_id.to_owned(),
            event_type: event_type.to_owned(),
            fields,
            event_id: None,
            via: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_file_sets_the_directory() {
        let config: super::super::MockConfig = toml::from_str(
            r#"
            [[directory.departments]]
            id = 1
            name = "Acme"
            [[directory.departments]]
            id = 7
            name = "Ops"
            parent = 1
            [[directory.users]]
            user_id = "zhangsan"
            name = "张三"
            dept_ids = [7]
            "#,
        )
        .unwrap();
        let dir = config.directory.unwrap();
        dir.validate().unwrap();
        assert_eq!(dir.chain(DEFAULT_CORP_ID, 7), [7, 1]);
        assert_eq!(dir.users[0].effective_union_id(), "union-zhangsan");
        let orphan = MockDirectory {
            departments: vec![MockDepartment::new(7, "Ops", Some(1))],
            users: Vec::new(),
        };
        assert!(orphan.validate().is_err(), "a parent that does not exist");
    }

    #[test]
    fn the_default_directory_is_consistent_and_changes_keep_it_so() {
        let mut dir = MockDirectory::default();
        dir.validate().unwrap();
        assert_eq!(dir.chain(DEFAULT_CORP_ID, 4), [4, 2, 1]);
        let corp = DEFAULT_CORP_ID.to_owned();
        // Refused changes leave it as it was.
        let remove_root = Change::RemoveDepartment {
            corp_id: corp.clone(),
            id: 2,
        };
        assert!(dir.apply(remove_root).is_err());
        let to_nowhere = Change::MoveUser {
            corp_id: corp.clone(),
            user_id: "alice".into(),
            dept_ids: vec![99],
        };
        assert!(dir.apply(to_nowhere).is_err());
        assert_eq!(dir, MockDirectory::default());
        let lost = Change::AddDepartment(MockDepartment::new(5, "Lost", Some(42)));
        assert!(dir.apply(lost).is_err());
        let outsider = Change::RemoveUser {
            corp_id: corp,
            user_id: "mallory".into(),
        };
        assert!(dir.apply(outsider).is_err(), "mallory is in the other corp");
    }
}
