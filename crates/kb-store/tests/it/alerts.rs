//! The alert states table: save replaces the whole set, load returns it, and it survives
//! reopening the file.

use kb_store::SqliteStore;

use crate::common::*;

#[test]
fn alert_states_are_replaced_and_survive_reopening() {
    let (dir, store) = store();
    assert!(store.load_alert_states().unwrap().is_empty());
    let a = ("fp-a".to_string(), r#"{"status":"firing"}"#.to_string());
    let b = ("fp-b".to_string(), r#"{"status":"pending"}"#.to_string());
    store.save_alert_states(&[b.clone(), a.clone()]).unwrap();
    assert_eq!(
        store.load_alert_states().unwrap(),
        vec![a.clone(), b.clone()]
    );
    // Saving replaces: b is gone, a is updated, a duplicate keeps the last document.
    let a2 = ("fp-a".to_string(), r#"{"status":"resolved"}"#.to_string());
    store.save_alert_states(&[a.clone(), a2.clone()]).unwrap();
    assert_eq!(store.load_alert_states().unwrap(), vec![a2.clone()]);
    assert_eq!(store.stats().unwrap().rows("alert_states"), 1);
    drop(store);
    let reopened = SqliteStore::open(&dir.path().join("kb.db")).unwrap();
    assert_eq!(reopened.load_alert_states().unwrap(), vec![a2]);
    reopened.save_alert_states(&[]).unwrap();
    assert!(reopened.load_alert_states().unwrap().is_empty());
}
