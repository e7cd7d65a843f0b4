//! The embedded registry's KV, Lease, Maintenance and Cluster services:
//! each request handed to the node, each answer given etcd's header.
//!
//! What a single node without auth cannot mean (member changes, alarms,
//! snapshots, moving the leader, downgrades, hashes) answers
//! `Unimplemented` with a message naming it.

use std::pin::Pin;
use std::time::Instant;

use etcd_client::proto::{
    PbAlarmRequest, PbAlarmResponse, PbCompactionRequest, PbCompactionResponse,
    PbDefragmentRequest, PbDefragmentResponse, PbDeleteRequest, PbDeleteResponse,
    PbDowngradeRequest, PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest,
    PbHashResponse, PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest,
    PbLeaseKeepAliveResponse, PbLeaseLeasesRequest, PbLeaseLeasesResponse, PbLeaseRevokeRequest,
    PbLeaseRevokeResponse, PbLeaseStatus, PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
    PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse,
    PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse,
    PbMemberUpdateRequest, PbMemberUpdateResponse, PbMoveLeaderRequest, PbMoveLeaderResponse,
    PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse,
    PbResponseHeader, PbSnapshotRequest, PbSnapshotResponse, PbStatusRequest, PbStatusResponse,
    PbTxnRequest, PbTxnResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::node::{Node, WriteOp, WriteOutcome};
use super::server::check_size;

/// The version `Status` reports: the etcd API this registry serves.
pub const API_VERSION: &str = "3.5.0";

/// Who answers: the ids every response header carries.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's id (the only one).
    pub member_id: u64,
}

impl Identity {
    /// The header of a response at `revision`.
    pub fn header(&self, revision: i64) -> PbResponseHeader {
        PbResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            // One node, never re-elected: the first term.
            raft_term: 1,
        }
    }
}

/// A boxed response stream.
pub type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn unexpected(op: &str) -> Status {
    Status::internal(format!(
        "the registry answered {op} with another kind of outcome"
    ))
}

/// The KV service.
#[derive(Debug, Clone)]
pub struct KvService {
    /// The node.
    pub node: Node,
}

#[tonic::async_trait]
impl etcd_client::proto::PbKvService for KvService {
    async fn range(
        &self,
        request: Request<PbRangeRequest>,
    ) -> Result<Response<PbRangeResponse>, Status> {
        let (mut response, revision) = self.node.range(request.get_ref())?;
        response.header = Some(self.node.identity().header(revision));
        Ok(Response::new(response))
    }

    type RangeStreamStream = Responses<PbRangeStreamResponse>;

    async fn range_stream(
        &self,
        _request: Request<PbRangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented(
            "the embedded registry does not serve RangeStream; use Range",
        ))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        check_size(request.get_ref())?;
        let written = self.node.write(WriteOp::Put(request.into_inner())).await?;
        let WriteOutcome::Put(mut response) = written.outcome else {
            return Err(unexpected("a put"));
        };
        response.header = Some(self.node.identity().header(written.revision));
        Ok(Response::new(response))
    }

    async fn delete_range(
        &self,
        request: Request<PbDeleteRequest>,
    ) -> Result<Response<PbDeleteResponse>, Status> {
        let written = self
            .node
            .write(WriteOp::Delete(request.into_inner()))
            .await?;
        let WriteOutcome::Delete(mut response) = written.outcome else {
            return Err(unexpected("a delete"));
        };
        response.header = Some(self.node.identity().header(written.revision));
        Ok(Response::new(response))
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        check_size(request.get_ref())?;
        let written = self.node.write(WriteOp::Txn(request.into_inner())).await?;
        let WriteOutcome::Txn(mut response) = written.outcome else {
            return Err(unexpected("a txn"));
        };
        set_headers(&mut response, self.node.identity().header(written.revision));
        Ok(Response::new(response))
    }

    async fn compact(
        &self,
        request: Request<PbCompactionRequest>,
    ) -> Result<Response<PbCompactionResponse>, Status> {
        let written = self
            .node
            .write(WriteOp::Compact(request.get_ref().revision))
            .await?;
        Ok(Response::new(PbCompactionResponse {
            header: Some(self.node.identity().header(written.revision)),
        }))
    }
}

/// Gives a txn's response, and every response inside it, the txn's header.
fn set_headers(response: &mut PbTxnResponse, header: PbResponseHeader) {
    use etcd_client::proto::PbTxnOpResponse as Op;
    for op in &mut response.responses {
        match &mut op.response {
            Some(Op::ResponseRange(range)) => range.header = Some(header),
            Some(Op::ResponsePut(put)) => put.header = Some(header),
            Some(Op::ResponseDeleteRange(delete)) => delete.header = Some(header),
            Some(Op::ResponseTxn(txn)) => set_headers(txn, header),
            None => {}
        }
    }
    response.header = Some(header);
}

/// The Lease service.
#[derive(Debug, Clone)]
pub struct LeaseService {
    /// The node.
    pub node: Node,
}

#[tonic::async_trait]
impl etcd_client::proto::PbLeaseService for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let request = request.into_inner();
        let written = self
            .node
            .write(WriteOp::Grant(request.id, request.ttl))
            .await?;
        let WriteOutcome::Granted(id, ttl) = written.outcome else {
            return Err(unexpected("a lease grant"));
        };
        Ok(Response::new(PbLeaseGrantResponse {
            header: Some(self.node.identity().header(written.revision)),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let written = self
            .node
            .write(WriteOp::Revoke(request.get_ref().id))
            .await?;
        Ok(Response::new(PbLeaseRevokeResponse {
            header: Some(self.node.identity().header(written.revision)),
        }))
    }

    type LeaseKeepAliveStream = Responses<PbLeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (outbox, responses) = mpsc::channel(64);
        let node = self.node.clone();
        let identity = self.node.identity();
        tokio::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                let (ttl, revision) = {
                    let mut inner = node.lock();
                    // A lease not found answers TTL 0, as etcd does.
                    let ttl = inner.state.keep_alive(request.id, Instant::now());
                    (ttl.unwrap_or(0), inner.visible)
                };
                let response = PbLeaseKeepAliveResponse {
                    header: Some(identity.header(revision)),
                    id: request.id,
                    ttl,
                };
                if outbox.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(receiver_stream(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let inner = self.node.lock();
        let header = Some(self.node.identity().header(inner.visible));
        let response = match inner.state.time_to_live(request.id, Instant::now()) {
            Some((left, lease)) => PbLeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: left,
                granted_ttl: lease.ttl,
                keys: if request.keys {
                    lease.keys.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            },
            // etcd answers a lease it does not have with TTL -1.
            None => PbLeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: -1,
                ..PbLeaseTimeToLiveResponse::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        _request: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let inner = self.node.lock();
        Ok(Response::new(PbLeaseLeasesResponse {
            header: Some(self.node.identity().header(inner.visible)),
            leases: inner
                .state
                .leases()
                .keys()
                .map(|id| PbLeaseStatus { id: *id })
                .collect(),
        }))
    }
}

/// A response stream fed by a channel.
pub fn receiver_stream<T: Send + 'static>(
    receiver: mpsc::Receiver<Result<T, Status>>,
) -> Responses<T> {
    Box::pin(futures::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ))
}

/// The Maintenance service: `Status` and `Defragment`.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    /// The node.
    pub node: Node,
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "the embedded registry is a single node without auth: {what} is not served"
    ))
}

#[tonic::async_trait]
impl etcd_client::proto::PbMaintenanceService for MaintenanceService {
    async fn alarm(
        &self,
        _request: Request<PbAlarmRequest>,
    ) -> Result<Response<PbAlarmResponse>, Status> {
        Err(unimplemented("Alarm"))
    }

    async fn status(
        &self,
        _request: Request<PbStatusRequest>,
    ) -> Result<Response<PbStatusResponse>, Status> {
        let revision = self.node.revision();
        let size = i64::try_from(self.node.log_size()).unwrap_or(i64::MAX);
        let index = u64::try_from(revision).unwrap_or(0);
        Ok(Response::new(PbStatusResponse {
            header: Some(self.node.identity().header(revision)),
            version: API_VERSION.into(),
            db_size: size,
            leader: self.node.identity().member_id,
            raft_index: index,
            raft_term: 1,
            raft_applied_index: index,
            db_size_in_use: size,
            ..PbStatusResponse::default()
        }))
    }

    async fn defragment(
        &self,
        _request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        self.node.defragment().await?;
        Ok(Response::new(PbDefragmentResponse {
            header: Some(self.node.identity().header(self.node.revision())),
        }))
    }

    async fn hash(
        &self,
        _request: Request<PbHashRequest>,
    ) -> Result<Response<PbHashResponse>, Status> {
        Err(unimplemented("Hash"))
    }

    async fn hash_kv(
        &self,
        _request: Request<PbHashKvRequest>,
    ) -> Result<Response<PbHashKvResponse>, Status> {
        Err(unimplemented("HashKV"))
    }

    type SnapshotStream = Responses<PbSnapshotResponse>;

    async fn snapshot(
        &self,
        _request: Request<PbSnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(unimplemented("Snapshot"))
    }

    async fn move_leader(
        &self,
        _request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        Err(unimplemented("MoveLeader"))
    }

    async fn downgrade(
        &self,
        _request: Request<PbDowngradeRequest>,
    ) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(unimplemented("Downgrade"))
    }
}

/// The Cluster service: `MemberList` names the one member.
#[derive(Debug, Clone)]
pub struct ClusterService {
    /// The node.
    pub node: Node,
    /// This member's name.
    pub name: String,
    /// The URL clients reach it at.
    pub client_url: String,
}

#[tonic::async_trait]
impl etcd_client::proto::PbClusterService for ClusterService {
    async fn member_add(
        &self,
        _request: Request<PbMemberAddRequest>,
    ) -> Result<Response<PbMemberAddResponse>, Status> {
        Err(unimplemented("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        Err(unimplemented("MemberRemove"))
    }

    async fn member_update(
        &self,
        _request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        Err(unimplemented("MemberUpdate"))
    }

    async fn member_list(
        &self,
        _request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        Ok(Response::new(PbMemberListResponse {
            header: Some(self.node.identity().header(self.node.revision())),
            members: vec![PbMember {
                id: self.node.identity().member_id,
                name: self.name.clone(),
                peer_ur_ls: Vec::new(),
                client_ur_ls: vec![self.client_url.clone()],
                is_learner: false,
            }],
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        Err(unimplemented("MemberPromote"))
    }
}
