//! Jute records from `zookeeper.jute` (ZooKeeper 3.8), shared by the server and the client.
//!
//! Each record is declared once with [`record!`], which derives its reader and writer from
//! the field list, so the field order on the wire is exactly the declaration order.

use super::{Reader, Record, Result, Writer};
use bytes::{BufMut, Bytes, BytesMut};

/// A type that can be one field of a record.
pub trait Field: Sized {
    fn read_field(r: &mut Reader<'_>) -> Result<Self>;
    fn write_field(&self, w: &mut BytesMut);
}

impl Field for i32 {
    fn read_field(r: &mut Reader<'_>) -> Result<Self> {
        r.i32()
    }
    fn write_field(&self, w: &mut BytesMut) {
        w.put_i32(*self)
    }
}

impl Field for i64 {
    fn read_field(r: &mut Reader<'_>) -> Result<Self> {
        r.i64()
    }
    fn write_field(&self, w: &mut BytesMut) {
        w.put_i64(*self)
    }
}

impl Field for bool {
    fn read_field(r: &mut Reader<'_>) -> Result<Self> {
        r.bool()
    }
    fn write_field(&self, w: &mut BytesMut) {
        w.put_bool_j(*self)
    }
}

/// Data buffers: null reads as empty.
impl Field for Bytes {
    fn read_field(r: &mut Reader<'_>) -> Result<Self> {
        r.buffer()
    }
    fn write_field(&self, w: &mut BytesMut) {
        w.put_buffer(self)
    }
}

/// Buffers where null matters (setData of null keeps length -1 on the wire).
impl Field for Option<Bytes> {
    fn read_field(r: &mut Reader<'_>) -> Result<Self> {
        r.nullable_buffer()
    }
    fn write_field(&self, w: &mut BytesMut) {
        w.put_opt_buffer(self.as_deref())
    }
}

/// Strings: null reads as empty, which is what ZooKeeper does for paths.
impl Field for String {
    fn read_field(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.opt_string()?.unwrap_or_default())
    }
    fn write_field(&self, w: &mut BytesMut) {
        w.put_string(self)
    }
}

impl Field for Vec<String> {
    fn read_field(r: &mut Reader<'_>) -> Result<Self> {
        r.vec(4, |r| Ok(r.opt_string()?.unwrap_or_default()))
    }
    fn write_field(&self, w: &mut BytesMut) {
        w.put_strings(self)
    }
}

macro_rules! record {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }

        impl Record for $name {
            #[allow(unused_variables)]
            fn read(r: &mut Reader<'_>) -> Result<Self> {
                Ok($name { $($field: <$ty as Field>::read_field(r)?),* })
            }
            #[allow(unused_variables)]
            fn write(&self, w: &mut BytesMut) {
                $(Field::write_field(&self.$field, w);)*
            }
        }

        impl Field for $name {
            fn read_field(r: &mut Reader<'_>) -> Result<Self> {
                <$name as Record>::read(r)
            }
            fn write_field(&self, w: &mut BytesMut) {
                <$name as Record>::write(self, w)
            }
        }
    };
}

/// Vectors of records.
impl<T: Record + Field> Field for Vec<T>
where
    T: NotString,
{
    fn read_field(r: &mut Reader<'_>) -> Result<Self> {
        r.vec(T::MIN_SIZE, T::read)
    }
    fn write_field(&self, w: &mut BytesMut) {
        w.put_i32(self.len() as i32);
        for item in self {
            item.write(w);
        }
    }
}

/// Marks records that may appear in vectors, with the fewest bytes one can occupy.
pub trait NotString {
    const MIN_SIZE: usize;
}

record! {
    /// Sent first by a client on a new connection. `read_only` is optional on the wire.
    pub struct ConnectRequestBase {
        pub protocol_version: i32,
        pub last_zxid_seen: i64,
        pub timeout: i32,
        pub session_id: i64,
        pub passwd: Bytes,
    }
}

/// The connect request with its optional trailing read-only flag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    /// `None` when the client sent no trailing byte (old clients).
    pub read_only: Option<bool>,
}

impl Record for ConnectRequest {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let b = ConnectRequestBase::read(r)?;
        let read_only = if r.remaining() > 0 {
            Some(r.bool()?)
        } else {
            None
        };
        Ok(ConnectRequest {
            protocol_version: b.protocol_version,
            last_zxid_seen: b.last_zxid_seen,
            timeout: b.timeout,
            session_id: b.session_id,
            passwd: b.passwd,
            read_only,
        })
    }
    fn write(&self, w: &mut BytesMut) {
        w.put_i32(self.protocol_version);
        w.put_i64(self.last_zxid_seen);
        w.put_i32(self.timeout);
        w.put_i64(self.session_id);
        w.put_buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.put_bool_j(ro);
        }
    }
}

/// The server's answer to a connect request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    /// Written only when the client sent the flag; read when present.
    pub read_only: Option<bool>,
}

impl Record for ConnectResponse {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let protocol_version = r.i32()?;
        let timeout = r.i32()?;
        let session_id = r.i64()?;
        let passwd = r.buffer()?;
        let read_only = if r.remaining() > 0 {
            Some(r.bool()?)
        } else {
            None
        };
        Ok(ConnectResponse {
            protocol_version,
            timeout,
            session_id,
            passwd,
            read_only,
        })
    }
    fn write(&self, w: &mut BytesMut) {
        w.put_i32(self.protocol_version);
        w.put_i32(self.timeout);
        w.put_i64(self.session_id);
        w.put_buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.put_bool_j(ro);
        }
    }
}

record! {
    pub struct RequestHeader { pub xid: i32, pub op: i32 }
}

record! {
    pub struct ReplyHeader { pub xid: i32, pub zxid: i64, pub err: i32 }
}

record! {
    /// The 68-byte node status.
    pub struct Stat {
        pub czxid: i64,
        pub mzxid: i64,
        pub ctime: i64,
        pub mtime: i64,
        pub version: i32,
        pub cversion: i32,
        pub aversion: i32,
        pub ephemeral_owner: i64,
        pub data_length: i32,
        pub num_children: i32,
        pub pzxid: i64,
    }
}

record! {
    pub struct Id { pub scheme: String, pub id: String }
}
impl NotString for Id {
    const MIN_SIZE: usize = 8;
}

record! {
    pub struct Acl { pub perms: i32, pub id: Id }
}
impl NotString for Acl {
    const MIN_SIZE: usize = 12;
}

impl Acl {
    /// `world:anyone` with every permission: ZooKeeper's OPEN_ACL_UNSAFE.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl {
            perms: super::perms::ALL,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]
    }
}

record! {
    pub struct CreateRequest { pub path: String, pub data: Option<Bytes>, pub acl: Vec<Acl>, pub flags: i32 }
}

record! {
    pub struct CreateTtlRequest {
        pub path: String,
        pub data: Option<Bytes>,
        pub acl: Vec<Acl>,
        pub flags: i32,
        pub ttl: i64,
    }
}

record! {
    pub struct CreateResponse { pub path: String }
}

record! {
    pub struct Create2Response { pub path: String, pub stat: Stat }
}

record! {
    pub struct DeleteRequest { pub path: String, pub version: i32 }
}

record! {
    /// exists, getData, getChildren and getChildren2 requests share this shape.
    pub struct PathWatchRequest { pub path: String, pub watch: bool }
}

record! {
    /// sync, getACL, getAllChildrenNumber and getEphemerals requests, and the sync response.
    pub struct PathRequest { pub path: String }
}

record! {
    /// exists and setData responses, and the stat of a multi setData result.
    pub struct StatResponse { pub stat: Stat }
}

record! {
    /// `data` is `None` for a node created or set with null data (ZooKeeper keeps the two apart).
    pub struct GetDataResponse { pub data: Option<Bytes>, pub stat: Stat }
}

record! {
    pub struct SetDataRequest { pub path: String, pub data: Option<Bytes>, pub version: i32 }
}

record! {
    pub struct GetChildrenResponse { pub children: Vec<String> }
}

record! {
    pub struct GetChildren2Response { pub children: Vec<String>, pub stat: Stat }
}

record! {
    /// `reconfig`: servers joining and leaving (incremental), or a whole new member list.
    pub struct ReconfigRequest {
        pub joining_servers: String,
        pub leaving_servers: String,
        pub new_members: String,
        pub cur_config_id: i64,
    }
}

record! {
    pub struct CheckVersionRequest { pub path: String, pub version: i32 }
}

record! {
    pub struct GetAclResponse { pub acl: Vec<Acl>, pub stat: Stat }
}

record! {
    pub struct SetAclRequest { pub path: String, pub acl: Vec<Acl>, pub version: i32 }
}

record! {
    /// One header in a multi request or response. The list ends with `{-1, true, -1}`.
    pub struct MultiHeader { pub op: i32, pub done: bool, pub err: i32 }
}

record! {
    pub struct ErrorResponse { pub err: i32 }
}

record! {
    pub struct SetWatches {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }
}

record! {
    pub struct SetWatches2 {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
        pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }
}

record! {
    pub struct AddWatchRequest { pub path: String, pub mode: i32 }
}

record! {
    pub struct RemoveWatchesRequest { pub path: String, pub watcher_type: i32 }
}

record! {
    /// A watch notification, sent with xid -1.
    pub struct WatcherEvent { pub event_type: i32, pub state: i32, pub path: String }
}

record! {
    pub struct AuthPacket { pub auth_type: i32, pub scheme: String, pub auth: Bytes }
}

record! {
    /// GetSASLRequest (opcode 102): the client's next SASL token.
    pub struct GetSaslRequest { pub token: Bytes }
}

record! {
    /// SetSASLResponse: the server's next SASL token.
    pub struct SetSaslResponse { pub token: Bytes }
}

record! {
    pub struct GetEphemeralsResponse { pub ephemerals: Vec<String> }
}

record! {
    pub struct GetAllChildrenNumberResponse { pub total: i32 }
}

record! {
    pub struct ClientInfo { pub auth_scheme: String, pub user: String }
}
impl NotString for ClientInfo {
    const MIN_SIZE: usize = 8;
}

record! {
    pub struct WhoAmIResponse { pub client_info: Vec<ClientInfo> }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::JuteError;

    fn round_trip<T: Record + std::fmt::Debug + PartialEq>(v: T) {
        let bytes = v.to_bytes();
        assert_eq!(T::decode(&bytes).unwrap(), v);
        // Every strict prefix must fail cleanly, never panic.
        for cut in 0..bytes.len() {
            let _ = T::decode(&bytes[..cut]);
        }
    }

    #[test]
    fn records_round_trip() {
        round_trip(CreateRequest {
            path: "/a/b".into(),
            data: Some(Bytes::from_static(b"xyz")),
            acl: Acl::open_unsafe(),
            flags: 3,
        });
        round_trip(Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        });
        round_trip(SetWatches2 {
            relative_zxid: 42,
            data_watches: vec!["/a".into()],
            exist_watches: vec![],
            child_watches: vec!["/b".into(), "/c".into()],
            persistent_watches: vec!["/p".into()],
            persistent_recursive_watches: vec!["/r".into()],
        });
        round_trip(WhoAmIResponse {
            client_info: vec![ClientInfo {
                auth_scheme: "ip".into(),
                user: "127.0.0.1".into(),
            }],
        });
        round_trip(ConnectRequest {
            timeout: 30000,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
            ..Default::default()
        });
        round_trip(ConnectRequest {
            timeout: 30000,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: None,
            ..Default::default()
        });
        round_trip(ConnectResponse {
            protocol_version: 0,
            timeout: 4000,
            session_id: 77,
            passwd: Bytes::from_static(&[1; 16]),
            read_only: Some(false),
        });
    }

    #[test]
    fn connect_sizes_match_real_clients() {
        let req = ConnectRequest {
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
            ..Default::default()
        };
        assert_eq!(req.to_bytes().len(), 45);
        let resp = ConnectResponse {
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
            ..Default::default()
        };
        assert_eq!(resp.to_bytes().len(), 37);
    }

    #[test]
    fn garbage_and_hostile_lengths_fail_cleanly() {
        // A string claiming 2 GiB.
        let mut b = BytesMut::new();
        b.put_i32(i32::MAX);
        assert!(matches!(
            PathRequest::decode(&b),
            Err(JuteError::Truncated { .. })
        ));
        // A negative length other than -1.
        let mut b = BytesMut::new();
        b.put_i32(-7);
        assert!(matches!(
            PathRequest::decode(&b),
            Err(JuteError::BadLength { .. })
        ));
        // A vector claiming more items than bytes remain.
        let mut b = BytesMut::new();
        b.put_i32(1_000_000);
        assert!(matches!(
            GetChildrenResponse::decode(&b),
            Err(JuteError::BadLength { .. })
        ));
        // Trailing bytes.
        let mut b = PathRequest { path: "/x".into() }.to_bytes();
        b.put_u8(0);
        assert!(matches!(
            PathRequest::decode(&b),
            Err(JuteError::TrailingBytes { extra: 1 })
        ));
        // Invalid UTF-8.
        let mut b = BytesMut::new();
        b.put_buffer(&[0xff, 0xfe]);
        assert!(matches!(
            PathRequest::decode(&b),
            Err(JuteError::BadUtf8 { .. })
        ));
        // Deterministic pseudo-random garbage never panics.
        let mut x: u32 = 12345;
        for len in 0..200usize {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = CreateRequest::decode(&buf);
            let _ = SetWatches2::decode(&buf);
            let _ = ConnectRequest::decode(&buf);
            let _ = GetAclResponse::decode(&buf);
        }
    }
}
