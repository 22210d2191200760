//! In-memory spend per tenant: what the database holds as of the writer's last commit or
//! read, plus what is queued for it, in exact integer billionths of a dollar.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// USD in billionths, so that in-memory sums are exact.
pub(super) type Nanos = i64;

pub(super) fn to_nanos(usd: f64) -> Nanos {
    // `as` saturates (and maps NaN to 0).
    (usd * 1e9).round() as Nanos
}

pub(super) fn to_usd(nanos: Nanos) -> f64 {
    nanos as f64 / 1e9
}

/// A tenant's spend on one day of one month.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Totals {
    pub(super) day: i64,
    pub(super) month: i64,
    pub(super) today: Nanos,
    pub(super) month_total: Nanos,
}

impl Totals {
    /// Adds `amount` spent on `day` of `month`.
    pub(super) fn add(&mut self, day: i64, month: i64, amount: Nanos) {
        if month > self.month {
            *self = Totals {
                day,
                month,
                today: amount,
                month_total: amount,
            };
        } else if month == self.month {
            self.month_total = self.month_total.saturating_add(amount);
            if day > self.day {
                self.day = day;
                self.today = amount;
            } else if day == self.day {
                self.today = self.today.saturating_add(amount);
            }
        }
    }

    /// (today, this month) as of `day` of `month`.
    pub(super) fn at(&self, day: i64, month: i64) -> (Nanos, Nanos) {
        match (self.month == month, self.day == day) {
            (true, true) => (self.today, self.month_total),
            (true, false) => (0, self.month_total),
            _ => (0, 0),
        }
    }
}

/// What this process knows of a tenant's spend: settled cost plus open reservations.
#[derive(Debug, Default)]
pub(super) struct Spend {
    /// In the database, as of the writer's last commit or read.
    pub(super) committed: Totals,
    /// Queued for the writer and not committed yet: (day, month, amount), one per day.
    pub(super) queued: Vec<(i64, i64, Nanos)>,
}

impl Spend {
    /// (today, this month) as of `day` of `month`.
    pub(super) fn at(&self, day: i64, month: i64) -> (Nanos, Nanos) {
        let (mut today, mut total) = self.committed.at(day, month);
        for &(d, m, amount) in &self.queued {
            if m == month {
                total = total.saturating_add(amount);
                if d == day {
                    today = today.saturating_add(amount);
                }
            }
        }
        (today, total)
    }

    pub(super) fn queue(&mut self, day: i64, month: i64, amount: Nanos) {
        match self.queued.iter_mut().find(|(d, ..)| *d == day) {
            Some(entry) => entry.2 = entry.2.saturating_add(amount),
            None => self.queued.push((day, month, amount)),
        }
    }

    /// Takes `amount` off the queue; with `committed`, adds it to the committed totals.
    pub(super) fn dequeue(&mut self, day: i64, month: i64, amount: Nanos, committed: bool) {
        match self.queued.iter().position(|(d, ..)| *d == day) {
            Some(i) => {
                self.queued[i].2 = self.queued[i].2.saturating_sub(amount);
                if self.queued[i].2 == 0 {
                    self.queued.swap_remove(i);
                }
            }
            None => self.queued.push((day, month, amount.saturating_neg())),
        }
        if committed {
            self.committed.add(day, month, amount);
        }
    }
}

pub(super) type SpendMap = Arc<Mutex<HashMap<String, Spend>>>;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Replaces every tenant's committed totals with `fresh` (this month's, read from the
/// database as of `day` of `month`); tenants with nothing spent or queued are forgotten.
pub(super) fn replace_committed(
    spend: &SpendMap,
    mut fresh: HashMap<String, Totals>,
    day: i64,
    month: i64,
) {
    let mut spend = lock(spend);
    spend.retain(|tenant, s| {
        s.committed = fresh.remove(tenant).unwrap_or(Totals {
            day,
            month,
            today: 0,
            month_total: 0,
        });
        s.committed.month_total != 0 || !s.queued.is_empty()
    });
    for (tenant, committed) in fresh {
        spend.insert(
            tenant,
            Spend {
                committed,
                queued: Vec::new(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_roll_over_by_day_and_month() {
        let mut t = Totals::default();
        t.add(10, 3, 5);
        t.add(10, 3, 2);
        assert_eq!(t.at(10, 3), (7, 7));
        t.add(11, 3, 1);
        assert_eq!(t.at(11, 3), (1, 8));
        // A late settlement of an earlier day counts in the month only.
        t.add(10, 3, 4);
        assert_eq!(t.at(11, 3), (1, 12));
        assert_eq!(t.at(12, 3), (0, 12));
        t.add(40, 4, 3);
        assert_eq!(t.at(40, 4), (3, 3));
        assert_eq!(t.at(41, 5), (0, 0));
    }
}
