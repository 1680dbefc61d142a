//! Every answer the tests read through [`super::json`] is checked against the OpenAPI document
//! the answering server serves at `/api/openapi.json`: the route and method are documented, the
//! status is one the operation lists, the content type is the documented one, and a JSON body
//! validates against the schema. Schemas are checked closed: a property the document does not
//! name fails, so an answer cannot grow a field its description lacks.

use reqwest::Method;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A served document, with its schemas closed.
pub(crate) struct Document {
    /// As served.
    pub(crate) raw: Value,
    /// `components` with every object schema closed.
    components: Value,
}

/// The documents by origin (`http://127.0.0.1:port`), fetched once per server.
static DOCUMENTS: Mutex<Option<HashMap<String, Arc<Document>>>> = Mutex::new(None);

impl Document {
    pub(crate) fn new(raw: Value) -> Self {
        let original = raw["components"].clone();
        let mut components = original.clone();
        if let Some(schemas) = components.get_mut("schemas").and_then(Value::as_object_mut) {
            for schema in schemas.values_mut() {
                close(schema, &original, false);
            }
        }
        Self { raw, components }
    }

    /// The documented route template that `path` is, the one with the most literal segments
    /// where several match (`/policies/preview` before `/policies/{id}`).
    pub(crate) fn template(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.raw["paths"]
            .as_object()?
            .keys()
            .filter(|t| {
                let ts: Vec<&str> = t.split('/').collect();
                ts.len() == segments.len()
                    && ts
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s)
            })
            .max_by_key(|t| t.split('/').filter(|s| !s.starts_with('{')).count())
            .cloned()
    }

    /// Checks one answer; the reason it does not fit, if it does not.
    pub(crate) fn check(
        &self,
        method: &Method,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let Some(template) = self.template(path) else {
            // The router's fallback, and DingTalk's Request URL (not ours to describe).
            if status == 404 || path.starts_with("/dingtalk/callback/") {
                return Ok(());
            }
            return Err(format!(
                "{method} {path} answered {status}, and no documented route is {path}"
            ));
        };
        let operation = &self.raw["paths"][&template][method.as_str().to_ascii_lowercase()];
        if operation.is_null() {
            return if status == 405 {
                Ok(())
            } else {
                Err(format!(
                    "{method} {template} answered {status}, and is not documented"
                ))
            };
        }
        let Some(response) = operation["responses"].get(status.to_string()) else {
            return Err(format!(
                "{method} {template} answered {status}, which its description does not list: {}",
                String::from_utf8_lossy(body)
            ));
        };
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{method} {template} {status}: documented without a body, answered {body:?}"
                ))
            };
        };
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let Some((_, documented)) = content
            .iter()
            .find(|(k, _)| k.split(';').next().map(|k| k.trim().to_ascii_lowercase()) == Some(media.clone()))
        else {
            return Err(format!(
                "{method} {template} {status}: answered as `{media}`, documented as {:?}",
                content.keys().collect::<Vec<_>>()
            ));
        };
        if media != "application/json" {
            return Ok(());
        }
        let instance: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{method} {template} {status}: the body is not JSON ({e})"))?;
        let mut schema = documented["schema"].clone();
        close(&mut schema, &self.raw["components"], false);
        let mut root = Map::new();
        root.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        root.insert("allOf".into(), json!([schema]));
        root.insert("components".into(), self.components.clone());
        let validator = jsonschema::draft202012::new(&Value::Object(root))
            .map_err(|e| format!("{method} {template} {status}: the schema does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("at `{}`: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {template} {status} does not fit its schema:\n  {}\nthe body: {instance}",
                errors.join("\n  ")
            ))
        }
    }
}

/// Closes `schema`: an object schema that names its properties and says nothing of others
/// accepts no others (`unevaluatedProperties: false`, which sees through `allOf`, so a
/// flattened part is checked with the whole). A branch of an `allOf` is left open (the whole
/// is closed), and a `$ref` branch is inlined for that, its own nested schemas still closed.
fn close(schema: &mut Value, components: &Value, branch: bool) {
    if branch {
        if let Some(target) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| resolve(r, components))
        {
            *schema = target.clone();
        }
    }
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let mut composed = false;
    if let Some(parts) = object.get_mut("allOf").and_then(Value::as_array_mut) {
        composed = true;
        for part in parts {
            close(part, components, true);
        }
    }
    // The alternatives of a branch are part of the branch: left open like it.
    for key in ["oneOf", "anyOf"] {
        if let Some(parts) = object.get_mut(key).and_then(Value::as_array_mut) {
            for part in parts {
                close(part, components, branch);
            }
        }
    }
    if let Some(parts) = object.get_mut("prefixItems").and_then(Value::as_array_mut) {
        for part in parts {
            close(part, components, false);
        }
    }
    if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
        for property in properties.values_mut() {
            close(property, components, false);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(part) = object.get_mut(key).filter(|p| p.is_object()) {
            close(part, components, false);
        }
    }
    let names_properties = object.contains_key("properties") || composed;
    let open_ended =
        object.contains_key("additionalProperties") || object.contains_key("unevaluatedProperties");
    if names_properties && !open_ended && !branch {
        object.insert("unevaluatedProperties".into(), Value::Bool(false));
    }
}

/// `#/components/schemas/Name` in `components`.
fn resolve<'c>(reference: &str, components: &'c Value) -> Option<&'c Value> {
    components["schemas"].get(reference.strip_prefix("#/components/schemas/")?)
}

/// The document `origin` serves (fetched again when `refresh`: a later server on a reused
/// port may serve another).
async fn document(origin: &str, refresh: bool) -> Arc<Document> {
    if !refresh {
        let cached = DOCUMENTS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(document) = cached.as_ref().and_then(|d| d.get(origin)) {
            return Arc::clone(document);
        }
    }
    let http = reqwest::Client::builder()
        // tests/tls.rs serves a self-signed certificate, on loopback.
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("{origin}/api/openapi.json");
    let fetched = match http.get(&url).send().await {
        Ok(response) => response.json::<Value>().await,
        Err(e) => Err(e),
    };
    let raw =
        fetched.unwrap_or_else(|e| panic!("{url}: no OpenAPI document ({e}); is this the approval server?"));
    let document = Arc::new(Document::new(raw));
    DOCUMENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(origin.to_owned(), Arc::clone(&document));
    document
}

/// Checks an answer from `url`'s server against that server's document; panics naming what
/// does not fit.
pub(crate) async fn check(
    method: &Method,
    url: &reqwest::Url,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) {
    let origin = url.origin().ascii_serialization();
    let mut outcome = document(&origin, false)
        .await
        .check(method, url.path(), status, content_type, body);
    if outcome.is_err() {
        outcome = document(&origin, true)
            .await
            .check(method, url.path(), status, content_type, body);
    }
    if let Err(reason) = outcome {
        panic!("the answer does not fit the OpenAPI document: {reason}");
    }
}
