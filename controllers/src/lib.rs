//! Visor's functional core.
//!
//! Everything here is pure: model types as they are stored in the registry,
//! validation of names, and the decisions the controller and agents make
//! (instance life cycle, scale and placement, liveness, garbage collection, and
//! which relation hook each unit runs next), and the app spec `visor apply`
//! takes, with its checks and its differences from what the registry holds.
//! No I/O, no async runtime, no etcd: inputs are snapshots, outputs are values,
//! so every rule can be table- and property-tested on its own.

mod agent;
mod desired;
mod gc;
mod hooks;
mod lifecycle;
mod liveness;
mod model;
mod name;
mod notifications;
mod placement;
mod relation;
mod rollout;
mod scale;
mod service;
mod spec;
#[cfg(test)]
mod testing;
mod wait;

pub use agent::{
    CommandLine, DEFAULT_PATH, ENV_AGENT_SOCKET, ENV_CONTEXT_ID, ENV_HOOK, ENV_PATH, ENV_RELATION,
    ENV_RELATION_ID, ENV_REMOTE_UNIT, ENV_UNIT, ExitCause, ExitVerdict, HOOKS_DIR, HookEnvSpec,
    InvalidCommand, InvalidEndpointName, PortError, PortRange, RestartBudget, choose_port,
    hook_env, hook_name, judge_exit, members_after, restarts_within,
};
pub use desired::{DesiredGroup, GroupKey, desired_groups};
pub use gc::plan_gc;
pub use hooks::{
    HandedHook, HookError, HookFailure, HookInfo, HookKind, HookSource, ListSource, LiveSource,
    MAX_FAILURE_REASON, MembershipChange, RelationHooks, RelationPlan, RelationSnapshot,
    State as RelationState, UnitAction, UnitView, UnitWrite, dying_source, is_waiting,
};
pub use lifecycle::{Actor, TransitionError};
pub use liveness::{
    ListedInstance, ListedTicket, LivenessPlan, LivenessSnapshot, LostInstance, TicketRef,
    plan_host_loss,
};
pub use model::{
    App, Deployment, Host, Instance, InstanceState, Limits, OnFailure, ProcService, ProcType,
    Readiness, ReadinessCheck, RestartPolicy, Revision, Rollout, Scale, SchemaVersion, Ticket,
    TicketOp,
};
pub use name::{EnvKey, InvalidName, Name, first_repeat};
pub use notifications::{
    DownReason, EndpointView, Notification, NotificationKind, Report, Retention, Sequence,
    ServiceAction, ServiceStatus, ServiceView, ServicesSnapshot, TrackedEndpoint, plan_services,
};
pub use placement::HostView;
pub use relation::{
    Endpoint, InvalidRelation, Members, Relation, Unit, UnitSettings, relation_members,
    relation_units,
};
pub use rollout::{
    RevisionCounts, RolloutGoal, RolloutPhase, RolloutStatus, RolloutStep, next_status,
    plan_rollout, rollout_notice,
};
pub use scale::{
    InstanceView, Removal, ScalePlan, ScaleSnapshot, Start, Stop, Unplaceable, active_count,
    count_in_state, holds_slot, plan_group, plan_scale,
};
pub use service::{
    EndpointChange, EndpointSeen, InvalidEndpoint, ServiceDef, ServiceEndpoint, UnknownScheme,
    diff_endpoint_incarnations, diff_endpoints, endpoint_change, is_scheme,
};
pub use spec::{
    AppParts, AppSpec, Change, CheckKind, FieldChange, InvalidSpec, LimitsSpec, ObjectId,
    ProcServiceSpec, ProcSpec, ReadinessSpec, RevisionSpec, RolloutSpec, ServiceSpec, diff,
    json_schema, parse_endpoint,
};
pub use wait::{Deployed, GroupProgress, WaitGoal, WaitProgress, WaitVerdict, judge_wait};
