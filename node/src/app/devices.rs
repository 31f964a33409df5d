//! This account's devices as the local API sees them; the list and linking live in the
//! delivery core, which holds the account key.

use tokenim_api::ServiceError;
use tokenim_api::types::{DeviceListView, DeviceView, LinkHistory, LinkView};
use tokenim_crypto::{DeviceList, Identity};

use super::views::address_of;
use crate::delivery::{DeliveryHandle, HistoryScope};

type ServiceResult<T> = Result<T, ServiceError>;

/// The parts of the service that devices need.
pub(super) struct Devices<'a> {
    pub(super) delivery: &'a DeliveryHandle,
    pub(super) identity: &'a Identity,
}

impl Devices<'_> {
    fn view(&self, list: &DeviceList) -> DeviceListView {
        let me = self.identity.public().identity_key;
        DeviceListView {
            account: address_of(&list.account()),
            version: list.version(),
            devices: list
                .devices()
                .iter()
                .map(|d| DeviceView {
                    id: hex::encode(d.device.identity_key),
                    name: d.name.clone(),
                    added_at: d.added_at,
                    primary: d.device.identity_key == list.account(),
                    this_device: d.device.identity_key == me,
                })
                .collect(),
        }
    }

    pub(super) async fn list(&self) -> ServiceResult<DeviceListView> {
        Ok(self.view(&self.delivery.devices().await?))
    }

    pub(super) async fn link(
        &self,
        ttl_secs: u64,
        history: LinkHistory,
    ) -> ServiceResult<LinkView> {
        let history = HistoryScope {
            days: history.days,
            messages: history.messages,
        };
        let (uri, expires_at) = self.delivery.link_device(ttl_secs, history).await?;
        Ok(LinkView { uri, expires_at })
    }

    pub(super) async fn join(&self, uri: String, name: String) -> ServiceResult<DeviceListView> {
        Ok(self.view(&self.delivery.join_account(uri, name).await?))
    }

    pub(super) async fn revoke(&self, id: String) -> ServiceResult<DeviceListView> {
        let mut device = [0u8; 32];
        hex::decode_to_slice(id.trim(), &mut device)
            .map_err(|_| ServiceError::NotFound(format!("device {id}")))?;
        Ok(self.view(&self.delivery.revoke_device(device).await?))
    }
}
