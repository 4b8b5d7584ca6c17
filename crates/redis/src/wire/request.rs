//! Requests on `<key>-request#<nsp>#`: fetch sockets, all rooms, remote join/leave/
//! disconnect, server-side emit, acknowledged broadcasts.

use super::*;

/// The request types of the adapter protocol (the numbers are on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestType {
    /// Socket ids in some rooms (adapters before 8.x).
    Sockets = 0,
    /// Every room of every node.
    AllRooms = 1,
    /// Make sockets join rooms.
    RemoteJoin = 2,
    /// Make sockets leave rooms.
    RemoteLeave = 3,
    /// Disconnect sockets.
    RemoteDisconnect = 4,
    /// Describe sockets (`fetchSockets()`).
    RemoteFetch = 5,
    /// An event for the servers themselves (`serverSideEmit`), and its ack response.
    ServerSideEmit = 6,
    /// A broadcast whose recipients' acks are wanted (`timeout().emit(.., cb)`).
    Broadcast = 7,
    /// Response: how many clients a node sent the acked broadcast to.
    BroadcastClientCount = 8,
    /// Response: one client's ack of an acked broadcast.
    BroadcastAck = 9,
}

impl RequestType {
    /// The type for a wire number.
    pub fn from_number(n: u64) -> Option<Self> {
        Some(match n {
            0 => Self::Sockets,
            1 => Self::AllRooms,
            2 => Self::RemoteJoin,
            3 => Self::RemoteLeave,
            4 => Self::RemoteDisconnect,
            5 => Self::RemoteFetch,
            6 => Self::ServerSideEmit,
            7 => Self::Broadcast,
            8 => Self::BroadcastClientCount,
            9 => Self::BroadcastAck,
            _ => return None,
        })
    }

    /// A fixed, low-cardinality name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sockets => "sockets",
            Self::AllRooms => "all_rooms",
            Self::RemoteJoin => "remote_join",
            Self::RemoteLeave => "remote_leave",
            Self::RemoteDisconnect => "remote_disconnect",
            Self::RemoteFetch => "remote_fetch",
            Self::ServerSideEmit => "server_side_emit",
            Self::Broadcast => "broadcast",
            Self::BroadcastClientCount => "broadcast_client_count",
            Self::BroadcastAck => "broadcast_ack",
        }
    }
}

/// Which sockets a join/leave/disconnect request targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The current form: every socket matching the selector (`opts`).
    Selector(Selector),
    /// The pre-8.x form: one socket id (`sid`); these requests expect an empty response.
    Socket(String),
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// Socket ids of the members of `rooms` (all sockets when empty).
    Sockets {
        /// The rooms.
        rooms: Vec<String>,
    },
    /// All room names.
    AllRooms,
    /// Make the targeted sockets join `rooms`.
    RemoteJoin {
        /// Which sockets.
        target: Target,
        /// Rooms to join.
        rooms: Vec<String>,
    },
    /// Make the targeted sockets leave `rooms`.
    RemoteLeave {
        /// Which sockets.
        target: Target,
        /// Rooms to leave.
        rooms: Vec<String>,
    },
    /// Disconnect the targeted sockets (`close`: close the underlying connection too).
    RemoteDisconnect {
        /// Which sockets.
        target: Target,
        /// Whether the Engine.IO connection is closed as well.
        close: bool,
    },
    /// Describe the selected sockets.
    RemoteFetch {
        /// Which sockets.
        selector: Selector,
    },
    /// An event for the servers: `data` = `[event, ...args]`; acked when the request has an id.
    ServerSideEmit {
        /// The event name and arguments.
        data: Payload,
    },
    /// A broadcast whose client acks are collected by the requester.
    Broadcast {
        /// What to deliver.
        packet: WirePacket,
        /// To whom, and the ack timeout.
        opts: BroadcastOpts,
    },
}

impl RequestBody {
    /// The wire type of this request.
    pub fn request_type(&self) -> RequestType {
        match self {
            Self::Sockets { .. } => RequestType::Sockets,
            Self::AllRooms => RequestType::AllRooms,
            Self::RemoteJoin { .. } => RequestType::RemoteJoin,
            Self::RemoteLeave { .. } => RequestType::RemoteLeave,
            Self::RemoteDisconnect { .. } => RequestType::RemoteDisconnect,
            Self::RemoteFetch { .. } => RequestType::RemoteFetch,
            Self::ServerSideEmit { .. } => RequestType::ServerSideEmit,
            Self::Broadcast { .. } => RequestType::Broadcast,
        }
    }
}

/// A request on `<key>-request#<nsp>#`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The requesting node (absent in the emitter's join/leave/disconnect requests).
    pub uid: Option<String>,
    /// Set when the requester waits for responses.
    pub request_id: Option<String>,
    /// What is asked.
    pub body: RequestBody,
}

/// Decodes a request (JSON, or MessagePack for `BROADCAST`).
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    let value = read_any(bytes)?;
    let uid = field(&value, "uid").and_then(Mp::as_str).map(str::to_owned);
    let request_id = field(&value, "requestId").and_then(id_string);
    let kind = field(&value, "type")
        .and_then(Mp::as_u64)
        .ok_or_else(|| shape("request without numeric type"))?;
    let kind = RequestType::from_number(kind)
        .ok_or_else(|| shape(format!("unknown request type {kind}")))?;
    let target = || -> Result<Target, WireError> {
        match field(&value, "opts") {
            Some(opts) if !opts.is_nil() => Ok(Target::Selector(Selector::from_mp(Some(opts))?)),
            _ => field(&value, "sid")
                .and_then(id_string)
                .map(Target::Socket)
                .ok_or_else(|| shape("request without opts or sid")),
        }
    };
    let rooms = || -> Result<Vec<String>, WireError> {
        match field(&value, "rooms") {
            Some(v) if !v.is_nil() => string_list(Some(v), "rooms"),
            // The legacy single-socket form names one `room`.
            _ => Ok(field(&value, "room")
                .and_then(id_string)
                .into_iter()
                .collect()),
        }
    };
    let body = match kind {
        RequestType::Sockets => RequestBody::Sockets {
            rooms: string_list(field(&value, "rooms"), "rooms")?,
        },
        RequestType::AllRooms => RequestBody::AllRooms,
        RequestType::RemoteJoin => RequestBody::RemoteJoin {
            target: target()?,
            rooms: rooms()?,
        },
        RequestType::RemoteLeave => RequestBody::RemoteLeave {
            target: target()?,
            rooms: rooms()?,
        },
        RequestType::RemoteDisconnect => RequestBody::RemoteDisconnect {
            target: target()?,
            close: field(&value, "close")
                .and_then(Mp::as_bool)
                .unwrap_or(false),
        },
        RequestType::RemoteFetch => RequestBody::RemoteFetch {
            selector: Selector::from_mp(field(&value, "opts"))?,
        },
        RequestType::ServerSideEmit => RequestBody::ServerSideEmit {
            data: Payload::from_msgpack(
                field(&value, "data").cloned().unwrap_or(Mp::Array(vec![])),
            ),
        },
        RequestType::Broadcast => RequestBody::Broadcast {
            packet: {
                let packet = WirePacket::from_mp(
                    field(&value, "packet")
                        .cloned()
                        .ok_or_else(|| shape("broadcast request without packet"))?,
                )?;
                check_deliverable(&packet.data)?;
                packet
            },
            opts: field(&value, "opts")
                .map(BroadcastOpts::from_mp)
                .transpose()?
                .unwrap_or_default(),
        },
        RequestType::BroadcastClientCount | RequestType::BroadcastAck => {
            return Err(shape(format!("{} is a response type", kind.as_str())));
        }
    };
    Ok(Request {
        uid,
        request_id,
        body,
    })
}

/// Encodes a request the way the Node adapter does (same key order; JSON except
/// `BROADCAST`, which is MessagePack because its packet may hold binary).
pub fn encode_request(req: &Request) -> Vec<u8> {
    if let RequestBody::Broadcast { packet, opts } = &req.body {
        let mut entries = Vec::with_capacity(5);
        if let Some(uid) = &req.uid {
            entries.push((Mp::from("uid"), Mp::from(uid.as_str())));
        }
        if let Some(id) = &req.request_id {
            entries.push((Mp::from("requestId"), Mp::from(id.as_str())));
        }
        entries.push((Mp::from("type"), Mp::from(RequestType::Broadcast as u8)));
        entries.push((Mp::from("packet"), packet.to_mp()));
        entries.push((Mp::from("opts"), opts.to_mp()));
        return write_mp(&Mp::Map(entries));
    }
    let mut m = Map::new();
    if let Some(uid) = &req.uid {
        m.insert("uid".into(), uid.as_str().into());
    }
    if let Some(id) = &req.request_id {
        m.insert("requestId".into(), id.as_str().into());
    }
    m.insert("type".into(), (req.body.request_type() as u8).into());
    let put_target = |m: &mut Map<String, Json>, target: &Target| match target {
        Target::Selector(s) => {
            m.insert("opts".into(), s.to_json());
        }
        Target::Socket(sid) => {
            m.insert("sid".into(), sid.as_str().into());
        }
    };
    match &req.body {
        RequestBody::Sockets { rooms } => {
            m.insert("rooms".into(), json_strings(rooms));
        }
        RequestBody::AllRooms => {}
        RequestBody::RemoteJoin { target, rooms } | RequestBody::RemoteLeave { target, rooms } => {
            put_target(&mut m, target);
            match target {
                Target::Selector(_) => {
                    m.insert("rooms".into(), json_strings(rooms));
                }
                Target::Socket(_) => {
                    m.insert(
                        "room".into(),
                        rooms.first().map_or(Json::Null, |r| r.as_str().into()),
                    );
                }
            }
        }
        RequestBody::RemoteDisconnect { target, close } => {
            put_target(&mut m, target);
            m.insert("close".into(), (*close).into());
        }
        RequestBody::RemoteFetch { selector } => {
            m.insert("opts".into(), selector.to_json());
        }
        RequestBody::ServerSideEmit { data } => {
            // JSON cannot carry binary; like JSON.stringify of a Buffer, it is written as
            // {"type":"Buffer","data":[bytes]}.
            m.insert("data".into(), json_with_buffers(data));
        }
        RequestBody::Broadcast { .. } => unreachable!("handled above"),
    }
    json_bytes(&Json::Object(m))
}

pub(super) fn json_with_buffers(payload: &Payload) -> Json {
    pub(super) fn walk(v: &Json, att: &[Bytes]) -> Json {
        match v {
            Json::Array(items) => Json::Array(items.iter().map(|i| walk(i, att)).collect()),
            Json::Object(map) => {
                if let Some(num) = placeholder_num(map)
                    && let Some(blob) = att.get(num)
                {
                    let mut m = Map::with_capacity(2);
                    m.insert("type".into(), "Buffer".into());
                    m.insert(
                        "data".into(),
                        Json::Array(blob.iter().map(|b| Json::from(*b)).collect()),
                    );
                    return Json::Object(m);
                }
                Json::Object(map.iter().map(|(k, v)| (k.clone(), walk(v, att))).collect())
            }
            other => other.clone(),
        }
    }
    walk(&payload.value, &payload.attachments)
}
