import TributaryClickHouse
import TributaryCore

/// `readings` is `PARTITION BY toYYYYMM(toDateTime(intDiv(time_ms, 1000)))`, and ClickHouse
/// refuses, from 19.5 on, an insert whose rows fall in more than `max_partitions_per_insert_block`
/// partitions (100 by default; code 252, and the same insert is refused again on every retry).
/// So the readings of a write are split by month into inserts of at most
/// `ClickHouseServerProfile.monthsPerInsert` months each: an honest batch holding ten years of
/// readings (a gateway's backlog of a long outage, a clock reset) goes through in three inserts.
extension ClickHouseSink {
    /// The month, as months since January of year 0 (UTC), in which the partition expression
    /// places `timeMs`: `intDiv` truncates toward zero, and `toDateTime` keeps the low 32 bits of
    /// the seconds, as 18.16 does. (Later releases may clamp out-of-range seconds instead, which
    /// only puts more readings into one partition.)
    static func partitionMonth(ofTimeMs timeMs: Int64) -> Int64 {
        let seconds = Int64(UInt32(truncatingIfNeeded: timeMs / 1000))
        // Days since 1970-01-01 to a civil date (proleptic Gregorian), after Howard Hinnant's
        // days_from_civil inverse; `seconds` is never negative here.
        let z = seconds / 86_400 + 719_468
        let era = z / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return year * 12 + (month - 1)
    }

    /// The batches' readings as one or more RowBinary insert bodies, each holding the readings of
    /// at most `monthsPerInsert` months (all of them in one body when nil, or when they span no
    /// more). Every reading keeps its batch identity and position, so a part inserted twice (a
    /// resend after a failure between parts) collapses like any retried row.
    public static func rowBinaryParts(of batches: [IncomingBatch], monthsPerInsert: Int?) -> [[UInt8]] {
        guard let monthsPerInsert, monthsPerInsert > 0 else { return [rowBinary(of: batches)] }
        var months = Set<Int64>()
        for batch in batches {
            for reading in batch.readings { months.insert(partitionMonth(ofTimeMs: reading.timeMs)) }
        }
        if months.count <= monthsPerInsert { return [rowBinary(of: batches)] }
        var partOfMonth: [Int64: Int] = [:]
        for (position, month) in months.sorted().enumerated() { partOfMonth[month] = position / monthsPerInsert }
        var parts = [RowBinary.Writer](repeating: RowBinary.Writer(), count: (months.count + monthsPerInsert - 1) / monthsPerInsert)
        for batch in batches {
            for (index, reading) in batch.readings.enumerated() {
                appendRow(reading, index: index, of: batch.identity, to: &parts[partOfMonth[partitionMonth(ofTimeMs: reading.timeMs)]!])
            }
        }
        return parts.map(\.bytes)
    }
}
