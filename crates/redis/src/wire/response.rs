//! Responses on `<key>-response#<nsp>#` (or a node's private channel), read in two
//! steps because their meaning depends on the request they answer.

use super::*;

/// One socket as described in a `REMOTE_FETCH` response (what `fetchSockets()` returns).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    /// The socket id.
    pub id: String,
    /// The handshake: `{headers, time, address, xdomain, secure, issued, url, query, auth}`.
    pub handshake: Json,
    /// The rooms it is in (its own id included).
    pub rooms: Vec<String>,
    /// Application data attached to the socket (`socket.data`).
    pub data: Json,
}

impl RemoteSocket {
    pub(super) fn to_json(&self) -> Json {
        let mut m = Map::with_capacity(4);
        m.insert("id".into(), self.id.as_str().into());
        m.insert("handshake".into(), self.handshake.clone());
        m.insert("rooms".into(), json_strings(&self.rooms));
        m.insert("data".into(), self.data.clone());
        Json::Object(m)
    }

    pub(super) fn from_mp(value: &Mp) -> Result<Self, WireError> {
        let id = field(value, "id")
            .and_then(id_string)
            .ok_or_else(|| shape("fetched socket without id"))?;
        Ok(Self {
            id,
            handshake: field(value, "handshake")
                .cloned()
                .map_or(Json::Null, |v| Payload::from_msgpack(v).value),
            rooms: string_list(field(value, "rooms"), "rooms")?,
            data: field(value, "data")
                .cloned()
                .map_or(Json::Null, |v| Payload::from_msgpack(v).value),
        })
    }
}

/// A response on `<key>-response#<nsp>#` (or a node's private response channel).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// To `SOCKETS`: `{"requestId","sockets":[ids]}`.
    Sockets {
        /// The request answered.
        request_id: String,
        /// Socket ids on the responding node.
        sockets: Vec<String>,
    },
    /// To `ALL_ROOMS`: `{"requestId","rooms":[..]}`.
    AllRooms {
        /// The request answered.
        request_id: String,
        /// Rooms on the responding node.
        rooms: Vec<String>,
    },
    /// To a legacy single-socket join/leave/disconnect: `{"requestId"}`.
    Done {
        /// The request answered.
        request_id: String,
    },
    /// To `REMOTE_FETCH`: `{"requestId","sockets":[{id,handshake,rooms,data}]}`.
    FetchSockets {
        /// The request answered.
        request_id: String,
        /// Sockets on the responding node.
        sockets: Vec<RemoteSocket>,
    },
    /// To `SERVER_SIDE_EMIT` with ack: `{"type":6,"requestId","data"}`.
    ServerSideEmit {
        /// The request answered.
        request_id: String,
        /// The first argument the handler acknowledged with.
        data: Json,
    },
    /// To `BROADCAST`: `{"type":8,"requestId","clientCount"}` (JSON).
    BroadcastClientCount {
        /// The request answered.
        request_id: String,
        /// Clients the responding node sent the packet to.
        client_count: u64,
    },
    /// To `BROADCAST`, once per client ack: `{"type":9,"requestId","packet"}` (MessagePack).
    BroadcastAck {
        /// The request answered.
        request_id: String,
        /// The client's first ack argument.
        packet: Payload,
    },
}

impl Response {
    /// The request this answers.
    pub fn request_id(&self) -> &str {
        match self {
            Self::Sockets { request_id, .. }
            | Self::AllRooms { request_id, .. }
            | Self::Done { request_id }
            | Self::FetchSockets { request_id, .. }
            | Self::ServerSideEmit { request_id, .. }
            | Self::BroadcastClientCount { request_id, .. }
            | Self::BroadcastAck { request_id, .. } => request_id,
        }
    }
}

/// Encodes a response as the Node adapter does.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    if let Response::BroadcastAck { request_id, packet } = resp {
        return write_mp(&Mp::Map(vec![
            (Mp::from("type"), Mp::from(RequestType::BroadcastAck as u8)),
            (Mp::from("requestId"), Mp::from(request_id.as_str())),
            (Mp::from("packet"), packet.to_msgpack()),
        ]));
    }
    let mut m = Map::new();
    match resp {
        Response::Sockets {
            request_id,
            sockets,
        } => {
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert("sockets".into(), json_strings(sockets));
        }
        Response::AllRooms { request_id, rooms } => {
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert("rooms".into(), json_strings(rooms));
        }
        Response::Done { request_id } => {
            m.insert("requestId".into(), request_id.as_str().into());
        }
        Response::FetchSockets {
            request_id,
            sockets,
        } => {
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert(
                "sockets".into(),
                Json::Array(sockets.iter().map(RemoteSocket::to_json).collect()),
            );
        }
        Response::ServerSideEmit { request_id, data } => {
            m.insert("type".into(), (RequestType::ServerSideEmit as u8).into());
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert("data".into(), data.clone());
        }
        Response::BroadcastClientCount {
            request_id,
            client_count,
        } => {
            m.insert(
                "type".into(),
                (RequestType::BroadcastClientCount as u8).into(),
            );
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert("clientCount".into(), (*client_count).into());
        }
        Response::BroadcastAck { .. } => unreachable!("handled above"),
    }
    json_bytes(&Json::Object(m))
}

/// A response whose meaning depends on the request it answers (the Node protocol does not
/// say, for example, whether `sockets` holds ids or descriptions): parse the envelope first,
/// look the request up by id, then interpret with [`ResponseFrame::interpret`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseFrame {
    /// The request answered.
    pub request_id: String,
    /// The `type` field, when the response has one (6, 8, 9).
    pub response_type: Option<RequestType>,
    value: Mp,
}

impl ResponseFrame {
    /// Parses the envelope of a response (JSON or MessagePack).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let value = read_any(bytes)?;
        let request_id = field(&value, "requestId")
            .and_then(id_string)
            .ok_or_else(|| shape("response without requestId"))?;
        let response_type = field(&value, "type")
            .and_then(Mp::as_u64)
            .and_then(RequestType::from_number);
        Ok(Self {
            request_id,
            response_type,
            value,
        })
    }

    /// Interprets the response as an answer to a request of type `asked`.
    pub fn interpret(self, asked: RequestType) -> Result<Response, WireError> {
        let request_id = self.request_id;
        let v = &self.value;
        Ok(match (asked, self.response_type) {
            (RequestType::Broadcast, Some(RequestType::BroadcastClientCount)) => {
                Response::BroadcastClientCount {
                    request_id,
                    client_count: field(v, "clientCount")
                        .and_then(Mp::as_u64)
                        .ok_or_else(|| shape("client count response without clientCount"))?,
                }
            }
            (RequestType::Broadcast, Some(RequestType::BroadcastAck)) => Response::BroadcastAck {
                request_id,
                packet: Payload::from_msgpack(field(v, "packet").cloned().unwrap_or(Mp::Nil)),
            },
            (RequestType::Broadcast, _) => {
                return Err(shape("broadcast response without type 8 or 9"));
            }
            (RequestType::Sockets, _) => Response::Sockets {
                request_id,
                sockets: string_list(field(v, "sockets"), "sockets")?,
            },
            (RequestType::AllRooms, _) => Response::AllRooms {
                request_id,
                rooms: string_list(field(v, "rooms"), "rooms")?,
            },
            (RequestType::RemoteFetch, _) => Response::FetchSockets {
                request_id,
                sockets: match field(v, "sockets") {
                    Some(Mp::Array(items)) => items
                        .iter()
                        .map(RemoteSocket::from_mp)
                        .collect::<Result<_, _>>()?,
                    _ => return Err(shape("fetch response without sockets")),
                },
            },
            (RequestType::ServerSideEmit, _) => Response::ServerSideEmit {
                request_id,
                data: field(v, "data")
                    .cloned()
                    .map_or(Json::Null, |d| Payload::from_msgpack(d).value),
            },
            (
                RequestType::RemoteJoin | RequestType::RemoteLeave | RequestType::RemoteDisconnect,
                _,
            ) => Response::Done { request_id },
            (RequestType::BroadcastClientCount | RequestType::BroadcastAck, _) => {
                return Err(shape("responses are not requests"));
            }
        })
    }
}
