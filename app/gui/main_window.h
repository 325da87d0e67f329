#pragma once

#include "engine_controller.h"

#include <QMainWindow>

#include <memory>

class ModelSummaryView;
class QLabel;
class QMenu;
class QProgressBar;
class QTabWidget;

// The studio's frame: File menu, a "Model" dock with the model's outline, a central tab area
// (an overview page for now) and a status line naming the loaded model.
class MainWindow : public QMainWindow {
    Q_OBJECT

public:
    explicit MainWindow(QWidget* parent = nullptr);

    // Loads an HF directory or a llama2.c .bin in the background; the result arrives as
    // modelShown() or errorShown().
    void openModel(const QString& path);

signals:
    // After the model's outline and the status line show a newly opened model.
    void modelShown();
    // After an error has been put in front of the user (without blocking).
    void errorShown(const QString& message);

protected:
    void closeEvent(QCloseEvent* event) override;
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    void createMenus();
    void showModel(const std::shared_ptr<const quantlens::Model>& model);
    void showError(const QString& message);
    void chooseModelDirectory();
    void chooseCheckpoint();
    void rememberRecent(const QString& path);
    void rebuildRecentMenu();

    EngineController engine_;
    std::shared_ptr<const quantlens::Model> model_;
    ModelSummaryView* summary_;
    QTabWidget* tabs_;
    QLabel* overview_;
    QLabel* modelStatus_;
    QProgressBar* busyIndicator_;
    QMenu* recentMenu_ = nullptr;
};
