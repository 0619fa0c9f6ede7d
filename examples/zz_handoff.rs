use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

fn bench<C: diesel::r2d2::R2D2Connection + Send + 'static>(url: &str, label: &str)
where
    i32: diesel::deserialize::FromSql<diesel::sql_types::Integer, C::Backend>,
    C::Backend: diesel::sql_types::HasSqlType<diesel::sql_types::Integer>,
    diesel::dsl::select<diesel::dsl::AsExprOf<i32, diesel::sql_types::Integer>>: diesel::query_dsl::LoadQuery<'static, C, i32>,
{
    let pool: Pool<ConnectionManager<C>> = Pool::builder().max_size(2).test_on_check_out(false).build(ConnectionManager::new(url)).unwrap();
    let (jtx, jrx) = mpsc::channel::<Job>();
    std::thread::spawn(move || { while let Ok(j) = jrx.recv() { j() } });
    let n = 3000;
    for round in 0..3 {
        let t = Instant::now();
        for i in 0..n {
            let mut c = pool.get().unwrap();
            let v: i32 = diesel::select((i as i32).into_sql::<diesel::sql_types::Integer>()).get_result(&mut *c).unwrap();
            assert_eq!(v, i as i32);
        }
        let direct = t.elapsed() / n as u32;
        let t = Instant::now();
        for i in 0..n {
            let mut c = pool.get().unwrap();
            let (rtx, rrx) = mpsc::sync_channel(1);
            jtx.send(Box::new(move || {
                let v: i32 = diesel::select((i as i32).into_sql::<diesel::sql_types::Integer>()).get_result(&mut *c).unwrap();
                drop(c);
                let _ = rtx.send(v);
            })).unwrap();
            let v = rrx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(v, i as i32);
        }
        let handed = t.elapsed() / n as u32;
        println!("{label} round {round}: direct {direct:?} handoff {handed:?} ratio {:.3}", handed.as_secs_f64() / direct.as_secs_f64());
    }
}

fn main() {
    bench::<diesel::PgConnection>("postgres://postgres@127.0.0.1:5432/postgres", "pg");
    bench::<diesel::MysqlConnection>("mysql://root@127.0.0.1:3306/test", "mysql");
    // pure handoff cost
    let (jtx, jrx) = mpsc::channel::<Job>();
    std::thread::spawn(move || { while let Ok(j) = jrx.recv() { j() } });
    let t = Instant::now();
    for i in 0..20000u32 {
        let (rtx, rrx) = mpsc::sync_channel(1);
        jtx.send(Box::new(move || { let _ = rtx.send(i); })).unwrap();
        rrx.recv_timeout(Duration::from_secs(5)).unwrap();
    }
    println!("bare handoff {:?}", t.elapsed() / 20000);
}
