//! The workflow calls, on [`DingTalkClient::workflow`](crate::client::DingTalkClient::workflow).

use super::{
    ActionResponse, AddCommentRequest, ExecuteTaskRequest, FormSchema, FormSchemaResponse,
    GetProcessInstanceResponse, InstanceIdPage, ListProcessInstanceIdsRequest,
    ListProcessInstanceIdsResponse, ProcessInstance, StartProcessInstanceRequest,
    StartProcessInstanceResponse, TerminateProcessInstanceRequest,
};
use crate::budget::Metering;
use crate::client::{DingTalkClient, Host, Op};
use crate::error::Result;
use crate::ids::{ProcessCode, ProcessInstanceId};
use futures_util::Stream;
use reqwest::Method;

const NO_BODY: Option<&()> = None;

/// The OA approval API of one client.
#[derive(Debug, Clone, Copy)]
pub struct Workflow<'a> {
    client: &'a DingTalkClient,
}

impl<'a> Workflow<'a> {
    pub(crate) fn new(client: &'a DingTalkClient) -> Self {
        Self { client }
    }

    /// Creates an approval instance (StartProcessInstance).
    ///
    /// Not retried after an ambiguous failure (timeout, dropped connection, 5xx): those return
    /// [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown) so the caller can look for the
    /// instance (e.g. [`list_instance_ids`](Self::list_instance_ids) by originator) before
    /// creating it again. Rate limits, rejected before DingTalk acts, are retried.
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) (e.g. `illegalComponent` for an unknown form label),
    /// [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown), transport and decode errors.
    pub async fn start_instance(&self, request: &StartProcessInstanceRequest) -> Result<ProcessInstanceId> {
        let op = Op {
            name: "StartProcessInstance",
            method: Method::POST,
            host: Host::Api,
            path: "/v1.0/workflow/processInstances",
            idempotent: false,
            metering: Metering::Monthly,
        };
        let response: StartProcessInstanceResponse = self.client.send(op, &[], Some(request)).await?;
        Ok(response.instance_id)
    }

    /// Reads an instance: status, result, tasks, history and form values (GetProcessInstance).
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) `processInstanceNotExist` and the like; transport and
    /// decode errors.
    pub async fn get_instance(&self, id: &ProcessInstanceId) -> Result<ProcessInstance> {
        let op = Op {
            name: "GetProcessInstance",
            method: Method::GET,
            host: Host::Api,
            path: "/v1.0/workflow/processInstances",
            idempotent: true,
            metering: Metering::Monthly,
        };
        let response: GetProcessInstanceResponse = self
            .client
            .send(op, &[("processInstanceId", id.as_str())], NO_BODY)
            .await?;
        Ok(response.result)
    }

    /// Revokes a running instance (TerminateProcessInstance). DingTalk refuses within 15 s of
    /// creation and for finished instances.
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api), [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown),
    /// transport and decode errors.
    pub async fn terminate(&self, request: &TerminateProcessInstanceRequest) -> Result<ActionResponse> {
        let op = Op {
            name: "TerminateProcessInstance",
            method: Method::POST,
            host: Host::Api,
            path: "/v1.0/workflow/processInstances/terminate",
            idempotent: false,
            metering: Metering::Monthly,
        };
        self.client.send(op, &[], Some(request)).await
    }

    /// Approves or refuses an approver's running task (ExecuteProcessInstance).
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api), [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown),
    /// transport and decode errors.
    pub async fn execute_task(&self, request: &ExecuteTaskRequest) -> Result<ActionResponse> {
        let op = Op {
            name: "ExecuteProcessInstance",
            method: Method::POST,
            host: Host::Api,
            path: "/v1.0/workflow/processInstances/execute",
            idempotent: false,
            metering: Metering::Monthly,
        };
        self.client.send(op, &[], Some(request)).await
    }

    /// Adds a comment (AddProcessInstanceComment).
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api), [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown),
    /// transport and decode errors.
    pub async fn add_comment(&self, request: &AddCommentRequest) -> Result<ActionResponse> {
        let op = Op {
            name: "AddProcessInstanceComment",
            method: Method::POST,
            host: Host::Api,
            path: "/v1.0/workflow/processInstances/comments",
            idempotent: false,
            metering: Metering::Monthly,
        };
        self.client.send(op, &[], Some(request)).await
    }

    /// One page of instance ids (ListProcessInstanceIds).
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api), transport and decode errors.
    pub async fn list_instance_ids_page(
        &self,
        request: &ListProcessInstanceIdsRequest,
    ) -> Result<InstanceIdPage> {
        let op = Op {
            name: "ListProcessInstanceIds",
            method: Method::POST,
            host: Host::Api,
            path: "/v1.0/workflow/processes/instanceIds/query",
            // A read, although it is a POST.
            idempotent: true,
            metering: Metering::Monthly,
        };
        let response: ListProcessInstanceIdsResponse = self.client.send(op, &[], Some(request)).await?;
        Ok(response.result)
    }

    /// Every instance id matching `request`, page after page, as a stream. It ends when a page
    /// has no `nextToken`, or when a token repeats (a guard against a server paging forever).
    pub fn list_instance_ids(
        &self,
        request: ListProcessInstanceIdsRequest,
    ) -> impl Stream<Item = Result<ProcessInstanceId>> + Send + 'a {
        let workflow = *self;
        let pages =
            futures_util::stream::unfold(Some((request, Vec::<i64>::new())), move |state| async move {
                let (mut request, mut seen) = state?;
                match workflow.list_instance_ids_page(&request).await {
                    Ok(page) => {
                        let next = page
                            .next_token
                            .filter(|t| *t != request.next_token && !seen.contains(t));
                        let state = next.map(|t| {
                            seen.push(request.next_token);
                            request.next_token = t;
                            (request, seen)
                        });
                        let items: Vec<Result<ProcessInstanceId>> = page.list.into_iter().map(Ok).collect();
                        Some((futures_util::stream::iter(items), state))
                    }
                    Err(e) => Some((futures_util::stream::iter(vec![Err(e)]), None)),
                }
            });
        futures_util::StreamExt::flatten(pages)
    }

    /// The form of a process: its components, labels and required flags
    /// (QuerySchemaByProcessCode).
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api), transport and decode errors.
    pub async fn form_schema(&self, process_code: &ProcessCode) -> Result<FormSchema> {
        let op = Op {
            name: "QuerySchemaByProcessCode",
            method: Method::GET,
            host: Host::Api,
            path: "/v1.0/workflow/forms/schemas/processCodes",
            idempotent: true,
            metering: Metering::Monthly,
        };
        let response: FormSchemaResponse = self
            .client
            .send(op, &[("processCode", process_code.as_str())], NO_BODY)
            .await?;
        Ok(response.result)
    }
}
