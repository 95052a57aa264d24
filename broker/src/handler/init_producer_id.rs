//! InitProducerId: a producer id and epoch for idempotent producers. Transactions are not
//! supported, so a transactional id is refused.

use super::Ctx;
use crate::security::acl::{Operation, ResourceType};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

pub async fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let broker = ctx.broker;
    let resp = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        return resp
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some
    // topic (KIP-679), once an authorizer is on.
    let may = ctx.cluster_allowed(Operation::IdempotentWrite)
        || ctx.broker.security.allowed_any(
            ctx.principal,
            ctx.host,
            Operation::Write,
            ResourceType::Topic,
        );
    if !may {
        return resp
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // KIP-360: a producer that already has an id asks for the next epoch of it (a fresh
    // id once the epoch is exhausted).
    if req.producer_id.0 >= 0 && (0..i16::MAX).contains(&req.producer_epoch) {
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match broker.producer_ids.next(&broker.cluster).await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            resp.with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
