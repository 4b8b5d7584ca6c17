//! The local room index of one namespace: room name → member socket ids.
//!
//! Every socket is implicitly in the room named by its own id; that room is
//! not stored here (it would cost an entry per socket) but resolved by the
//! namespace from its socket table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Sid;

/// A room name.
pub type Room = Arc<str>;

/// Room name → members, for one namespace on this node.
#[derive(Debug, Default)]
pub struct RoomIndex {
    rooms: HashMap<Room, HashSet<Sid>>,
}

impl RoomIndex {
    /// Adds `sid` to `room`; true when this created the room.
    pub fn join(&mut self, room: &Room, sid: &Sid) -> bool {
        let members = self.rooms.entry(room.clone()).or_default();
        let created = members.is_empty();
        members.insert(sid.clone());
        created
    }

    /// Removes `sid` from `room`, dropping the room when it empties; true when it did.
    pub fn leave(&mut self, room: &str, sid: &str) -> bool {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(sid);
            if members.is_empty() {
                self.rooms.remove(room);
                return true;
            }
        }
        false
    }

    /// Members of `room` (stored rooms only).
    pub fn members(&self, room: &str) -> Option<&HashSet<Sid>> {
        self.rooms.get(room)
    }

    /// Whether `sid` is a stored member of `room`.
    pub fn contains(&self, room: &str, sid: &str) -> bool {
        self.rooms.get(room).is_some_and(|m| m.contains(sid))
    }

    /// Every stored room.
    pub fn names(&self) -> impl Iterator<Item = &Room> {
        self.rooms.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_drop_when_empty() {
        let mut idx = RoomIndex::default();
        let (r, a, b): (Room, Sid, Sid) = ("r".into(), "a".into(), "b".into());
        assert!(idx.join(&r, &a), "the first member creates the room");
        assert!(!idx.join(&r, &b));
        assert!(idx.contains("r", "a"));
        assert!(!idx.leave("r", "a"));
        assert_eq!(idx.members("r").map(|m| m.len()), Some(1));
        assert!(idx.leave("r", "b"), "the last member deletes it");
        assert!(!idx.leave("r", "b"));
        assert!(idx.members("r").is_none());
        assert_eq!(idx.names().count(), 0);
    }
}
