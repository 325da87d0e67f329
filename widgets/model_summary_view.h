#pragma once

#include <QTreeWidget>

namespace quantlens {
class Model;
struct RunRecord;
struct TensorView;
} // namespace quantlens

// A read-only outline of a loaded model: its architecture numbers, then its tensors in forward
// order (embedding, one item per transformer block, final norm, head). Items keep the stored
// tensor name under Qt::UserRole so that later views can find the weights they point at. A run's
// method (with its chart colour; the header's tooltip is the key), bits, outlier count and output
// error fill the last columns of each linear layer.
class ModelSummaryView : public QTreeWidget {
    Q_OBJECT

public:
    enum Column {
        NameColumn,
        ShapeColumn,
        DTypeColumn,
        BytesColumn,
        MethodColumn,
        BitsColumn,
        OutliersColumn,
        ErrorColumn
    };
    // Linear layers keep their block index under this role (and their tensor name under UserRole).
    static constexpr int BlockRole = Qt::UserRole + 1;

    explicit ModelSummaryView(QWidget* parent = nullptr);

    // Replaces what is shown; keeps no reference to `model`. clear() empties the view.
    void showModel(const quantlens::Model& model);

    // Fills the method, bits, outlier and error columns of every linear layer from a run.
    void showRun(const quantlens::RunRecord& run);

    QSize sizeHint() const override;

signals:
    // The current item became a block's linear layer ("q_proj", …).
    void linearLayerSelected(int block, const QString& layer);

private:
    QTreeWidgetItem* addArchitecture(const quantlens::Model& model);
    QTreeWidgetItem* addTensor(QTreeWidgetItem* parent, const QString& label,
                               const quantlens::TensorView& tensor);
};
