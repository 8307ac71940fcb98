//! The room versions Plexus supports and the rules ruma attaches to each. Everything else in
//! `room/` takes a `RoomVersionRules` rather than a version id, so this is the one place that
//! decides which versions exist.

use ruma::RoomVersionId;
use ruma::room_version_rules::RoomVersionRules;

/// The room versions Plexus creates and joins. Older versions are left out on purpose: they use
/// event formats and authorization rules (string power levels, `creator` fields, no canonical
/// JSON enforcement) that ruma only supports on a best-effort basis.
pub const SUPPORTED: &[RoomVersionId] =
    &[RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

/// The rules of `version` when Plexus supports it, `None` otherwise.
pub fn rules_for(version: &RoomVersionId) -> Option<RoomVersionRules> {
    if SUPPORTED.contains(version) {
        version.rules()
    } else {
        None
    }
}

/// The supported versions as an owned list, for capability answers.
pub fn supported_versions() -> Vec<RoomVersionId> {
    SUPPORTED.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_versions_ten_to_twelve_have_rules() {
        for version in SUPPORTED {
            assert!(rules_for(version).is_some(), "{version}");
        }
        assert!(rules_for(&RoomVersionId::V9).is_none());
        assert!(rules_for(&RoomVersionId::V1).is_none());
        let v12 = rules_for(&RoomVersionId::V12).unwrap();
        assert!(v12.authorization.room_create_event_id_as_room_id);
        let v11 = rules_for(&RoomVersionId::V11).unwrap();
        assert!(v11.redaction.content_field_redacts);
        let v10 = rules_for(&RoomVersionId::V10).unwrap();
        assert!(!v10.redaction.content_field_redacts);
    }
}
