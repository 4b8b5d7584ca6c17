//! The Kubernetes operator for the `ChatRoom` custom resource. Never imports engineio, socketio, cluster or chat.
