//! Reporting abuse: users report an event they can see, or a whole room, and the reports wait in
//! the `reports` table for the server's operators, who list, read and close them through the
//! admin API. Reporting never tells the reporter more than they could see already: an event that
//! does not exist, is in another room or is hidden from them is "not found" alike.

use ruma::{EventId, RoomId};

use super::super::rate_limit::Action;
use super::super::{Error, Result, Services, UserSession};
use super::summary::read_summary;
use super::visibility::Viewer;
use crate::storage::{
    self,
    reports::{NewReport, Report, ReportQuery},
};

/// The range of `score`: -100 is the most offensive, 0 inoffensive.
const SCORE_RANGE: std::ops::RangeInclusive<i64> = -100..=0;

/// Which reports an operator asks for.
pub struct ReportFilter {
    /// Event reports (`true`) or room reports (`false`).
    pub events: bool,
    pub newest_first: bool,
    pub offset: i64,
    pub limit: i64,
    pub user_id: Option<String>,
    pub room_id: Option<String>,
    pub event_sender: Option<String>,
}

impl Services {
    /// `POST /rooms/{roomId}/report/{eventId}`: only members of the room may report, and only
    /// events they can see.
    pub async fn report_event(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<String>,
        score: Option<i64>,
    ) -> Result<()> {
        if let Some(score) = score
            && !SCORE_RANGE.contains(&score)
        {
            return Err(Error::InvalidParam(format!(
                "score must be between -100 and 0, not {score}"
            )));
        }
        // Reports share the message bucket: each one is a message to the operators, and a flood of
        // them would bury the real ones.
        self.rate_limiter
            .check(Action::Message, session.user_id.as_str())?;
        let (room, user, event) = (
            room_id.to_string(),
            session.user_id.to_string(),
            event_id.to_string(),
        );
        let visible = self
            .db
            .read(move |c| {
                let joined = storage::rooms::membership(c, &room, &user)?
                    .is_some_and(|m| m.membership == "join");
                let Some(row) = storage::events::get_event(c, &event)? else {
                    return Ok(false);
                };
                Ok(joined && Viewer::new(c, &room, &user)?.can_see(c, &row)?)
            })
            .await?;
        if !visible {
            return Err(Error::NotFound(format!(
                "event {event_id} not found, or you are not joined to {room_id}"
            )));
        }
        self.store_report(session, room_id, Some(event_id), reason, score)
            .await
    }

    /// `POST /rooms/{roomId}/report`: anyone may report a room this server knows.
    pub async fn report_room(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        reason: String,
    ) -> Result<()> {
        self.rate_limiter
            .check(Action::Message, session.user_id.as_str())?;
        self.known_room_or_not_found(room_id).await?;
        self.store_report(session, room_id, None, Some(reason), None)
            .await
    }

    async fn store_report(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        event_id: Option<&EventId>,
        reason: Option<String>,
        score: Option<i64>,
    ) -> Result<()> {
        let (room, event, user) = (
            room_id.to_string(),
            event_id.map(EventId::to_string),
            session.user_id.to_string(),
        );
        let report_id = self
            .db
            .write("insert_report", move |c| {
                storage::reports::insert_report_txn(
                    c,
                    &NewReport {
                        room_id: &room,
                        event_id: event.as_deref(),
                        user_id: &user,
                        reason: reason.as_deref(),
                        score,
                        received_ts: storage::now_ms(),
                    },
                )
            })
            .await?;
        // The reason is the reporter's own words and stays out of the logs, like message bodies.
        tracing::info!(
            report.id = report_id,
            room.id = %room_id,
            event.id = event_id.map(|e| e.as_str()),
            user.id = %session.user_id,
            "abuse report received"
        );
        Ok(())
    }

    /// A page of reports for an operator, with each room's current name and canonical alias, and
    /// how many reports match in all.
    pub async fn list_reports(&self, filter: ReportFilter) -> Result<(Vec<Report>, i64)> {
        Ok(self
            .db
            .read(move |c| {
                let (mut reports, total) = storage::reports::list_reports(
                    c,
                    &ReportQuery {
                        events: filter.events,
                        newest_first: filter.newest_first,
                        offset: filter.offset,
                        limit: filter.limit,
                        user_id: filter.user_id.as_deref(),
                        room_id: filter.room_id.as_deref(),
                        event_sender: filter.event_sender.as_deref(),
                    },
                )?;
                for report in &mut reports {
                    describe_room(c, report)?;
                }
                Ok((reports, total))
            })
            .await?)
    }

    /// One report with the reported event as stored.
    pub async fn get_report(&self, report_id: i64) -> Result<Report> {
        self.db
            .read(move |c| {
                let Some(mut report) = storage::reports::get_report(c, report_id)? else {
                    return Ok(None);
                };
                describe_room(c, &mut report)?;
                Ok(Some(report))
            })
            .await?
            .ok_or_else(|| Error::NotFound(format!("there is no report {report_id}")))
    }

    /// Closes a report once an operator has dealt with it.
    pub async fn delete_report(&self, report_id: i64) -> Result<()> {
        let deleted = self
            .db
            .write("delete_report", move |c| {
                storage::reports::delete_report_txn(c, report_id)
            })
            .await?;
        if !deleted {
            return Err(Error::NotFound(format!("there is no report {report_id}")));
        }
        tracing::info!(report.id = report_id, "abuse report closed");
        Ok(())
    }
}

/// Adds the room's current name and canonical alias to a report.
fn describe_room(conn: &rusqlite::Connection, report: &mut Report) -> storage::Result<()> {
    let Ok(room_id) = RoomId::parse(&report.room_id) else {
        return Ok(());
    };
    if let Some(summary) = read_summary(conn, &room_id)? {
        report.name = summary.name;
        report.canonical_alias = summary.canonical_alias.map(|a| a.to_string());
    }
    Ok(())
}
