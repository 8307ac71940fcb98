//! Table `reports`: what users reported as abusive (an event, or a whole room), for the server's
//! operators to review through the admin API.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// A report as received.
pub struct NewReport<'a> {
    pub room_id: &'a str,
    pub event_id: Option<&'a str>,
    pub user_id: &'a str,
    pub reason: Option<&'a str>,
    pub score: Option<i64>,
    pub received_ts: i64,
}

/// A stored report with what an operator needs to judge it: the reported event's sender, and (filled
/// in by the service from the room's current state) the room's name and canonical alias.
#[derive(Debug, Clone)]
pub struct Report {
    pub id: i64,
    pub received_ts: i64,
    pub room_id: String,
    pub event_id: Option<String>,
    pub user_id: String,
    pub reason: Option<String>,
    pub score: Option<i64>,
    /// The sender of the reported event (absent for room reports).
    pub sender: Option<String>,
    pub name: Option<String>,
    pub canonical_alias: Option<String>,
    /// The reported event as stored (federation form), for the single-report view only.
    pub event_json: Option<serde_json::Value>,
}

/// Which reports a listing shows.
pub struct ReportQuery<'a> {
    /// Event reports (`true`) or room reports (`false`).
    pub events: bool,
    pub newest_first: bool,
    pub offset: i64,
    pub limit: i64,
    pub user_id: Option<&'a str>,
    pub room_id: Option<&'a str>,
    pub event_sender: Option<&'a str>,
}

pub fn insert_report_txn(txn: &Connection, report: &NewReport<'_>) -> Result<i64> {
    txn.prepare_cached(
        "INSERT INTO reports (received_ts, room_id, event_id, user_id, reason, score)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        report.received_ts,
        report.room_id,
        report.event_id,
        report.user_id,
        report.reason,
        report.score
    ])?;
    Ok(txn.last_insert_rowid())
}

pub fn delete_report_txn(txn: &Connection, report_id: i64) -> Result<bool> {
    Ok(txn.execute("DELETE FROM reports WHERE report_id = ?1", [report_id])? == 1)
}

const SELECT: &str =
    "SELECT r.report_id, r.received_ts, r.room_id, r.event_id, r.user_id, r.reason,
            r.score, e.sender
     FROM reports r LEFT JOIN events e ON e.event_id = r.event_id";

fn report_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Report> {
    Ok(Report {
        id: r.get(0)?,
        received_ts: r.get(1)?,
        room_id: r.get(2)?,
        event_id: r.get(3)?,
        user_id: r.get(4)?,
        reason: r.get(5)?,
        score: r.get(6)?,
        sender: r.get(7)?,
        name: None,
        canonical_alias: None,
        event_json: None,
    })
}

/// One page of reports and how many match the query in all.
pub fn list_reports(conn: &Connection, query: &ReportQuery<'_>) -> Result<(Vec<Report>, i64)> {
    let filter = "WHERE (r.event_id IS NOT NULL) = ?1
          AND (?2 IS NULL OR r.user_id = ?2)
          AND (?3 IS NULL OR r.room_id = ?3)
          AND (?4 IS NULL OR e.sender = ?4)";
    let args = params![
        query.events,
        query.user_id,
        query.room_id,
        query.event_sender
    ];
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM reports r LEFT JOIN events e ON e.event_id = r.event_id {filter}"
        ))?
        .query_row(args, |r| r.get(0))?;
    let order = if query.newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "{SELECT} {filter} ORDER BY r.received_ts {order}, r.report_id {order} LIMIT ?5 OFFSET ?6"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            query.events,
            query.user_id,
            query.room_id,
            query.event_sender,
            query.limit,
            query.offset
        ],
        report_row,
    )?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// One report with the reported event's stored JSON.
pub fn get_report(conn: &Connection, report_id: i64) -> Result<Option<Report>> {
    let found = conn
        .prepare_cached(&format!("{SELECT} WHERE r.report_id = ?1"))?
        .query_row([report_id], report_row)
        .optional()?;
    let Some(mut report) = found else {
        return Ok(None);
    };
    if let Some(event_id) = &report.event_id {
        let json: Option<String> = conn
            .prepare_cached("SELECT json FROM events WHERE event_id = ?1")?
            .query_row([event_id], |r| r.get(0))
            .optional()?;
        report.event_json = json.map(|j| serde_json::from_str(&j)).transpose()?;
    }
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        crate::storage::migrated_in_memory()
    }

    fn report(conn: &Connection, room: &str, event: Option<&str>, user: &str, ts: i64) -> i64 {
        insert_report_txn(
            conn,
            &NewReport {
                room_id: room,
                event_id: event,
                user_id: user,
                reason: Some("spam"),
                score: Some(-100),
                received_ts: ts,
            },
        )
        .unwrap()
    }

    fn query<'a>() -> ReportQuery<'a> {
        ReportQuery {
            events: true,
            newest_first: true,
            offset: 0,
            limit: 10,
            user_id: None,
            room_id: None,
            event_sender: None,
        }
    }

    #[test]
    fn listings_page_filter_and_separate_event_from_room_reports() {
        let conn = db();
        let first = report(&conn, "!a:x", Some("$1"), "@u:x", 1);
        let second = report(&conn, "!b:x", Some("$2"), "@v:x", 2);
        let room_report = report(&conn, "!a:x", None, "@u:x", 3);

        let (page, total) = list_reports(&conn, &query()).unwrap();
        assert_eq!(total, 2);
        assert_eq!(
            page.iter().map(|r| r.id).collect::<Vec<_>>(),
            [second, first]
        );

        let (page, total) = list_reports(
            &conn,
            &ReportQuery {
                newest_first: false,
                offset: 1,
                ..query()
            },
        )
        .unwrap();
        assert_eq!((page.len(), page[0].id, total), (1, second, 2));

        let (page, _) = list_reports(
            &conn,
            &ReportQuery {
                user_id: Some("@u:x"),
                ..query()
            },
        )
        .unwrap();
        assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [first]);

        let (rooms, total) = list_reports(
            &conn,
            &ReportQuery {
                events: false,
                ..query()
            },
        )
        .unwrap();
        assert_eq!((rooms[0].id, total), (room_report, 1));

        assert!(delete_report_txn(&conn, first).unwrap());
        assert!(!delete_report_txn(&conn, first).unwrap());
        assert!(get_report(&conn, first).unwrap().is_none());
        assert_eq!(
            get_report(&conn, second).unwrap().unwrap().score,
            Some(-100)
        );
    }
}
