//! The one place where errors of the layers below become the local API's errors.

use tokenim_api::ServiceError;
use tokenim_store::StoreError;

use crate::delivery::DeliveryError;
use crate::mailbox::HomeRelayError;

/// Seconds an app is told to wait when the outbox is full: deliveries drain it in that time
/// unless the peers are offline, and then waiting longer does not help either.
const OUTBOX_RETRY_AFTER_SECS: u64 = 5;

pub(crate) fn store_error(e: StoreError) -> ServiceError {
    match e {
        StoreError::QuotaExceeded { .. } | StoreError::StorageFull(_) => {
            ServiceError::Unavailable(e.to_string())
        }
        other => ServiceError::Internal(other.to_string()),
    }
}

impl From<DeliveryError> for ServiceError {
    fn from(e: DeliveryError) -> Self {
        match e {
            DeliveryError::UnknownContact(a) => Self::UnknownContact(a),
            DeliveryError::NotAContact(m) | DeliveryError::NotAllowed(m) => Self::Conflict(m),
            DeliveryError::InvalidCard(m) => Self::InvalidCard(m),
            DeliveryError::NotFound(m) => Self::NotFound(m),
            DeliveryError::MessageTooLarge { size, max } => Self::MessageTooLarge { size, max },
            DeliveryError::OutboxFull { .. } => Self::RateLimited {
                retry_after_secs: Some(OUTBOX_RETRY_AFTER_SECS),
            },
            DeliveryError::Invalid(m) => Self::BadRequest(m),
            DeliveryError::ShuttingDown | DeliveryError::Unreachable(_) => {
                Self::Unavailable(e.to_string())
            }
            DeliveryError::Store(s) => store_error(s),
            DeliveryError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<HomeRelayError> for ServiceError {
    fn from(e: HomeRelayError) -> Self {
        match e {
            HomeRelayError::BadAddress(_) => Self::BadRequest(e.to_string()),
            HomeRelayError::NotFound(_) => Self::NotFound(e.to_string()),
            HomeRelayError::Full | HomeRelayError::Configured(_) => Self::Conflict(e.to_string()),
            HomeRelayError::Store(s) => store_error(s),
            HomeRelayError::ShuttingDown => Self::Unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_outbox_asks_the_app_to_retry_later() {
        let e = ServiceError::from(DeliveryError::OutboxFull { queued: 100_000 });
        assert!(matches!(
            e,
            ServiceError::RateLimited {
                retry_after_secs: Some(OUTBOX_RETRY_AFTER_SECS)
            }
        ));
    }

    #[test]
    fn store_errors_map_the_same_from_every_layer() {
        let quota = || StoreError::QuotaExceeded {
            quota: tokenim_store::Quota::TotalBytes,
            limit: 1,
            used: 1,
            requested: 1,
        };
        let direct = store_error(quota());
        let via_delivery = ServiceError::from(DeliveryError::Store(quota()));
        let via_home = ServiceError::from(HomeRelayError::Store(quota()));
        for e in [direct, via_delivery, via_home] {
            assert!(matches!(e, ServiceError::Unavailable(_)), "{e:?}");
        }
    }
}
