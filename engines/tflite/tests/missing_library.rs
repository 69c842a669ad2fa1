//! A process whose runtime cannot be found gets an error that says where it looked.

#[test]
fn a_missing_library_names_the_variable_to_set() {
    // This test binary is its own process, so pointing the variable at a missing file and
    // starting from a directory without `shared/` exercises the not-found path.
    std::env::set_var(apg_tflite::LIBRARY_ENV, "/nonexistent/libLiteRt.so");
    let empty = std::env::temp_dir().join(format!("apg-tflite-nolib-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    std::env::set_current_dir(&empty).unwrap();
    if std::path::Path::new(apg_tflite::PACKAGED_LIBRARY).exists() {
        eprintln!(
            "{} is installed, so the library is always found",
            apg_tflite::PACKAGED_LIBRARY
        );
        return;
    }
    let err = apg_tflite::Runtime::global().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, apg_tflite::Error::LibraryNotFound { .. }),
        "{text}"
    );
    assert!(
        text.contains("/nonexistent/libLiteRt.so") && text.contains("APG_LITERT_LIB"),
        "{text}"
    );
    std::fs::remove_dir_all(empty).unwrap();
}
