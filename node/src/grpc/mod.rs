//! Client-facing gRPC services: KV ([`kv`]) and Cluster ([`cluster`]),
//! plus the mapping of errors to gRPC codes ([`errors`]).

pub mod cluster;
pub mod errors;
pub mod kv;

/// A request on its way to the leader, marked so that it is never forwarded
/// a second time.
pub(crate) fn forwarded<T>(inner: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(inner);
    r.metadata_mut().insert(
        raftkv_proto::FORWARDED_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    r
}
