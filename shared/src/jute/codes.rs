//! Numeric constants of the ZooKeeper protocol: opcodes, error codes, watch event types,
//! keeper states, create modes and ACL permissions (ZooKeeper 3.8, `ZooDefs` and
//! `KeeperException.Code`).

/// Request opcodes (`ZooDefs.OpCode`).
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// Special xids.
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// Error codes (`KeeperException.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorCode {
    Ok = 0,
    SystemError = -1,
    RuntimeInconsistency = -2,
    DataInconsistency = -3,
    ConnectionLoss = -4,
    MarshallingError = -5,
    Unimplemented = -6,
    OperationTimeout = -7,
    BadArguments = -8,
    UnknownSession = -12,
    NewConfigNoQuorum = -13,
    ReconfigInProgress = -14,
    ApiError = -100,
    NoNode = -101,
    NoAuth = -102,
    BadVersion = -103,
    NoChildrenForEphemerals = -108,
    NodeExists = -110,
    NotEmpty = -111,
    SessionExpired = -112,
    InvalidCallback = -113,
    InvalidAcl = -114,
    AuthFailed = -115,
    SessionMoved = -118,
    NotReadOnly = -119,
    EphemeralOnLocalSession = -120,
    NoWatcher = -121,
    RequestTimeout = -122,
    /// The server requires authentication and the session has none (ZooKeeper's
    /// SESSIONCLOSEDREQUIRESASLAUTH); the connection is closed.
    SessionClosedRequireAuth = -124,
    QuotaExceeded = -125,
    Throttled = -127,
}

impl ErrorCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Maps a wire code back; unknown codes become `SystemError`'s neighbour `ApiError`.
    pub fn from_code(c: i32) -> ErrorCode {
        use ErrorCode::*;
        match c {
            0 => Ok,
            -1 => SystemError,
            -2 => RuntimeInconsistency,
            -3 => DataInconsistency,
            -4 => ConnectionLoss,
            -5 => MarshallingError,
            -6 => Unimplemented,
            -7 => OperationTimeout,
            -8 => BadArguments,
            -12 => UnknownSession,
            -13 => NewConfigNoQuorum,
            -14 => ReconfigInProgress,
            -101 => NoNode,
            -102 => NoAuth,
            -103 => BadVersion,
            -108 => NoChildrenForEphemerals,
            -110 => NodeExists,
            -111 => NotEmpty,
            -112 => SessionExpired,
            -113 => InvalidCallback,
            -114 => InvalidAcl,
            -115 => AuthFailed,
            -118 => SessionMoved,
            -119 => NotReadOnly,
            -120 => EphemeralOnLocalSession,
            -121 => NoWatcher,
            -122 => RequestTimeout,
            -124 => SessionClosedRequireAuth,
            -125 => QuotaExceeded,
            -127 => Throttled,
            _ => ApiError,
        }
    }

    /// The name ZooKeeper's own tools print.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Ok => "OK",
            SystemError => "SYSTEMERROR",
            RuntimeInconsistency => "RUNTIMEINCONSISTENCY",
            DataInconsistency => "DATAINCONSISTENCY",
            ConnectionLoss => "CONNECTIONLOSS",
            MarshallingError => "MARSHALLINGERROR",
            Unimplemented => "UNIMPLEMENTED",
            OperationTimeout => "OPERATIONTIMEOUT",
            BadArguments => "BADARGUMENTS",
            UnknownSession => "UNKNOWNSESSION",
            NewConfigNoQuorum => "NEWCONFIGNOQUORUM",
            ReconfigInProgress => "RECONFIGINPROGRESS",
            ApiError => "APIERROR",
            NoNode => "NONODE",
            NoAuth => "NOAUTH",
            BadVersion => "BADVERSION",
            NoChildrenForEphemerals => "NOCHILDRENFOREPHEMERALS",
            NodeExists => "NODEEXISTS",
            NotEmpty => "NOTEMPTY",
            SessionExpired => "SESSIONEXPIRED",
            InvalidCallback => "INVALIDCALLBACK",
            InvalidAcl => "INVALIDACL",
            AuthFailed => "AUTHFAILED",
            SessionMoved => "SESSIONMOVED",
            NotReadOnly => "NOTREADONLY",
            EphemeralOnLocalSession => "EPHEMERALONLOCALSESSION",
            NoWatcher => "NOWATCHER",
            RequestTimeout => "REQUESTTIMEOUT",
            SessionClosedRequireAuth => "SESSIONCLOSEDREQUIRESASLAUTH",
            QuotaExceeded => "QUOTAEXCEEDED",
            Throttled => "THROTTLEDOP",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl std::error::Error for ErrorCode {}

/// Watch event types (`Watcher.Event.EventType`).
pub mod event {
    pub const NONE: i32 = -1;
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    pub const DATA_WATCH_REMOVED: i32 = 5;
    pub const CHILD_WATCH_REMOVED: i32 = 6;
    pub const PERSISTENT_WATCH_REMOVED: i32 = 7;

    /// The name ZooKeeper's tools print for an event type.
    pub fn name(t: i32) -> &'static str {
        match t {
            NONE => "None",
            NODE_CREATED => "NodeCreated",
            NODE_DELETED => "NodeDeleted",
            NODE_DATA_CHANGED => "NodeDataChanged",
            NODE_CHILDREN_CHANGED => "NodeChildrenChanged",
            DATA_WATCH_REMOVED => "DataWatchRemoved",
            CHILD_WATCH_REMOVED => "ChildWatchRemoved",
            PERSISTENT_WATCH_REMOVED => "PersistentWatchRemoved",
            _ => "Unknown",
        }
    }
}

/// Keeper states (`Watcher.Event.KeeperState`).
pub mod state {
    pub const DISCONNECTED: i32 = 0;
    pub const SYNC_CONNECTED: i32 = 3;
    pub const AUTH_FAILED: i32 = 4;
    pub const CONNECTED_READ_ONLY: i32 = 5;
    pub const EXPIRED: i32 = -112;
    pub const CLOSED: i32 = 7;
}

/// Create modes (the `flags` of a create request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CreateMode {
    Persistent,
    Ephemeral,
    PersistentSequential,
    EphemeralSequential,
    Container,
    PersistentWithTtl,
    PersistentSequentialWithTtl,
}

impl CreateMode {
    pub fn from_flags(flags: i32) -> Option<CreateMode> {
        Some(match flags {
            0 => CreateMode::Persistent,
            1 => CreateMode::Ephemeral,
            2 => CreateMode::PersistentSequential,
            3 => CreateMode::EphemeralSequential,
            4 => CreateMode::Container,
            5 => CreateMode::PersistentWithTtl,
            6 => CreateMode::PersistentSequentialWithTtl,
            _ => return None,
        })
    }

    pub fn flags(self) -> i32 {
        match self {
            CreateMode::Persistent => 0,
            CreateMode::Ephemeral => 1,
            CreateMode::PersistentSequential => 2,
            CreateMode::EphemeralSequential => 3,
            CreateMode::Container => 4,
            CreateMode::PersistentWithTtl => 5,
            CreateMode::PersistentSequentialWithTtl => 6,
        }
    }

    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }

    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }

    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

/// ACL permission bits (`ZooDefs.Perms`).
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// addWatch modes.
pub mod add_watch_mode {
    pub const PERSISTENT: i32 = 0;
    pub const PERSISTENT_RECURSIVE: i32 = 1;
}

/// removeWatches / checkWatches watcher types.
pub mod watcher_type {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
}
