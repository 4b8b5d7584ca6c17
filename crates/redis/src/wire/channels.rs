//! The Redis channels of one namespace: broadcasts, room broadcasts, requests and
//! responses, as the Node adapter names them.

/// The Redis channels of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// `<key>#<nsp>#`: broadcasts to everyone or to several rooms.
    pub broadcast: String,
    /// `<key>-request#<nsp>#`: requests; its subscriber count is the server count.
    pub request: String,
    /// `<key>-response#<nsp>#`: responses (the Node adapter's default reply channel).
    pub response: String,
    /// `<key>-response#<nsp>#<uid>#`: responses meant for this node only.
    pub private_response: String,
}

impl Channels {
    /// The channels of namespace `nsp` for prefix `key`, as seen by the node `uid`.
    pub fn new(key: &str, nsp: &str, uid: &str) -> Self {
        let response = format!("{key}-response#{nsp}#");
        Self {
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            private_response: format!("{response}{uid}#"),
            response,
        }
    }

    /// The pattern a node PSUBSCRIBEs to for broadcasts (`<key>#<nsp>#*`).
    pub fn broadcast_pattern(&self) -> String {
        format!("{}*", self.broadcast)
    }

    /// The channel a broadcast is published on: the room channel when `rooms` is exactly one
    /// room, otherwise the namespace channel.
    pub fn broadcast_channel(&self, rooms: &[String]) -> String {
        match rooms {
            [room] => format!("{}{room}#", self.broadcast),
            _ => self.broadcast.clone(),
        }
    }

    /// For a channel received through the broadcast pattern: `None` when it is not a
    /// broadcast channel of this namespace, `Some(None)` for the namespace channel,
    /// `Some(Some(room))` for a room channel.
    pub fn room_of<'a>(&self, channel: &'a str) -> Option<Option<&'a str>> {
        let rest = channel.strip_prefix(self.broadcast.as_str())?;
        if rest.is_empty() {
            return Some(None);
        }
        rest.strip_suffix('#').map(Some)
    }

    /// The private response channel of another node `uid` (`<key>-response#<nsp>#<uid>#`).
    pub fn private_response_of(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }
}
