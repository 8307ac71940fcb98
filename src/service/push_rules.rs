//! Push rules: each user's rule set, kept as their `m.push_rules` account data (so clients also
//! receive it through `/sync`), starting from the specification's server-default rules. The
//! `/pushrules` endpoints edit it; a server-default rule can be enabled, disabled or given new
//! actions but not removed or replaced.

use ruma::UserId;
use ruma::push::{
    Action, AnyPushRule, InsertPushRuleError, NewPushRule, RemovePushRuleError, RuleKind, Ruleset,
};
use serde_json::json;

use super::{Error, Result, Services};

const PUSH_RULES: &str = "m.push_rules";

impl Services {
    /// The user's rule set: what they stored, or the server defaults.
    pub async fn push_rules(&self, user_id: &UserId) -> Result<Ruleset> {
        let stored = self.account_data(user_id, None, PUSH_RULES).await?;
        let stored = stored.and_then(|content| content.get("global").cloned());
        match stored.map(serde_json::from_value::<Ruleset>) {
            Some(Ok(rules)) => Ok(rules),
            // Unreadable stored rules fall back to the defaults rather than failing every request.
            Some(Err(e)) => {
                tracing::warn!(user.id = %user_id, error = %e, "stored push rules are unreadable; using the defaults");
                Ok(Ruleset::server_default(user_id))
            }
            None => Ok(Ruleset::server_default(user_id)),
        }
    }

    async fn store_push_rules(&self, user_id: &UserId, rules: &Ruleset) -> Result<()> {
        let content = json!({ "global": rules });
        self.store_account_data(user_id, None, PUSH_RULES, content)
            .await?;
        // The push evaluator drops the rules it keeps.
        self.push_rules_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// One rule, or `M_NOT_FOUND`.
    pub async fn push_rule(
        &self,
        user_id: &UserId,
        kind: RuleKind,
        rule_id: &str,
    ) -> Result<AnyPushRule> {
        let rules = self.push_rules(user_id).await?;
        rules
            .get(kind.clone(), rule_id)
            .map(|rule| rule.to_owned())
            .ok_or_else(|| Error::NotFound(format!("no {kind} push rule {rule_id:?}")))
    }

    pub async fn set_push_rule(
        &self,
        user_id: &UserId,
        rule: NewPushRule,
        after: Option<&str>,
        before: Option<&str>,
    ) -> Result<()> {
        let mut rules = self.push_rules(user_id).await?;
        rules.insert(rule, after, before).map_err(|e| match e {
            InsertPushRuleError::UnknownRuleId => Error::NotFound(e.to_string()),
            other => Error::InvalidParam(other.to_string()),
        })?;
        self.store_push_rules(user_id, &rules).await
    }

    pub async fn delete_push_rule(
        &self,
        user_id: &UserId,
        kind: RuleKind,
        rule_id: &str,
    ) -> Result<()> {
        let mut rules = self.push_rules(user_id).await?;
        rules.remove(kind.clone(), rule_id).map_err(|e| match e {
            RemovePushRuleError::NotFound => {
                Error::NotFound(format!("no {kind} push rule {rule_id:?}"))
            }
            other => Error::InvalidParam(other.to_string()),
        })?;
        self.store_push_rules(user_id, &rules).await
    }

    pub async fn set_push_rule_enabled(
        &self,
        user_id: &UserId,
        kind: RuleKind,
        rule_id: &str,
        enabled: bool,
    ) -> Result<()> {
        let mut rules = self.push_rules(user_id).await?;
        rules
            .set_enabled(kind.clone(), rule_id, enabled)
            .map_err(|_| Error::NotFound(format!("no {kind} push rule {rule_id:?}")))?;
        self.store_push_rules(user_id, &rules).await
    }

    pub async fn set_push_rule_actions(
        &self,
        user_id: &UserId,
        kind: RuleKind,
        rule_id: &str,
        actions: Vec<Action>,
    ) -> Result<()> {
        let mut rules = self.push_rules(user_id).await?;
        rules
            .set_actions(kind.clone(), rule_id, actions)
            .map_err(|_| Error::NotFound(format!("no {kind} push rule {rule_id:?}")))?;
        self.store_push_rules(user_id, &rules).await
    }
}
